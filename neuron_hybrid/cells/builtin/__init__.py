"""Built-in cells; importing this package registers them."""
from ..registry import register_cell
from .ball_and_stick import build_ball_and_stick
from .pospischil import build_allen_pvalb, build_allen_scnn1a, build_ca1_pospischil
from .hay2011 import build_l5pc_hay2011

for _name, _fn in (("ball_and_stick", build_ball_and_stick),
                   ("ca1_pospischil", build_ca1_pospischil),
                   ("l5pc_hay2011", build_l5pc_hay2011),
                   ("allen_scnn1a", build_allen_scnn1a),
                   ("allen_pvalb", build_allen_pvalb)):
    register_cell(_name, _fn, replace=True)

__all__ = ["build_ball_and_stick", "build_ca1_pospischil", "build_l5pc_hay2011",
           "build_allen_scnn1a", "build_allen_pvalb"]
