"""The training protocol: a longer trace repeats the 200 ms protocol with new noise."""
import torch

from neuron_hybrid.kinetics.trace import training_protocol


def test_repeated_protocol_keeps_the_steps_and_draws_new_noise():
    dt = 0.025
    t1, s1 = training_protocol(dt, 0.01)
    t3, s3 = training_protocol(dt, 0.01, repeats=3)
    n = s1.shape[1]
    assert s3.shape == (1, 3 * n) and len(t3) == 3 * n
    assert torch.allclose(t3[1:] - t3[:-1], torch.full((3 * n - 1,), dt, dtype=t3.dtype))
    assert torch.equal(s3[:, :n], s1)
    steps = slice(0, int(130 / dt))  # 0-130 ms: the steps, identical in every repeat
    assert torch.equal(s3[:, n:2 * n][:, steps], s1[:, steps])
    ou = slice(int(140 / dt), int(195 / dt))  # the Ornstein-Uhlenbeck segment: a new realisation
    assert not torch.allclose(s3[:, n:2 * n][:, ou], s1[:, ou])
    assert not torch.allclose(s3[:, 2 * n:][:, ou], s3[:, n:2 * n][:, ou])
