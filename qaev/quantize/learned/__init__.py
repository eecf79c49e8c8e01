"""Learned weight rounding and block reconstruction (PyTorch, optional).

- :mod:`qaev.quantize.learned.adaround`: layer-wise learned rounding (AdaRound, Nagel et al., ICML 2020).
- :mod:`qaev.quantize.learned.torch_graph`: an ONNX (sub)graph run with PyTorch ops, so blocks train.
- :mod:`qaev.quantize.learned.blocks`: cutting a graph into blocks at residual joins.
- :mod:`qaev.quantize.learned.reconstruct`: block reconstruction of rounding and activation step
  sizes with quantization dropped at random (BRECQ, Li et al., ICLR 2021; QDrop, Wei et al.,
  ICLR 2022); :mod:`~qaev.quantize.learned.block_learning` learns one block of it, and
  :mod:`~qaev.quantize.learned.pacing` gives later blocks fewer steps where the learning must
  end by a deadline.

Nothing here imports PyTorch until it is called; without it the calls raise
:class:`~qaev.errors.ConfigError` naming the extra to install (``pip install 'qaev[torch]'``).
"""
