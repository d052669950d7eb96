"""Module-level cell builders for the data-generation tests (picklable for worker processes)."""


def small_ball_and_stick(**overrides):
    """ball_and_stick through a user builder (what a user would pass as ``cell=``)."""
    from neuron_hybrid.cells import build

    return build("ball_and_stick", **overrides)
