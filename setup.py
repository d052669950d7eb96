"""neuron-hybrid: learned (neural ODE) currents inside NEURON, and model reduction with them."""
from pathlib import Path
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


class BuildPyWithData(build_py):
    """Copy the top-level `mod/` and `morphologies/` folders into the package for non-editable installs."""

    def run(self):
        super().run()
        for folder in ("mod", "morphologies"):
            src = HERE / folder
            if src.is_dir():
                dst = Path(self.build_lib) / "neuron_hybrid" / "_data" / folder
                if dst.exists():
                    shutil.rmtree(dst)
                shutil.copytree(src, dst)


setup(
    name="neuron-hybrid",
    version="0.1.0",
    description="Hybrid biophysical neuron models: learned TorchScript currents running inside NEURON",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["neuron_hybrid", "neuron_hybrid.*"]),
    package_data={"neuron_hybrid.runtime": ["bridge/*.cpp", "bridge/*.h"], "neuron_hybrid.dic": ["weights/*.pt"]},
    install_requires=[
        "neuron>=9.0,<10",
        "torch==2.13.0",
        "numpy>=1.24",
        "scipy>=1.10",
        "h5py>=3.8",
        "matplotlib>=3.7",
        "tqdm>=4.60",
        "efel>=5.0",
        "sympy>=1.12",
        "numba>=0.60",
    ],
    extras_require={"test": ["pytest>=7", "pynwb>=2"], "mpi": ["mpi4py>=3.1"], "nwb": ["pynwb>=2"]},
    entry_points={"console_scripts": ["neuron-hybrid=neuron_hybrid.cli:main"]},
    cmdclass={"build_py": BuildPyWithData},
)
