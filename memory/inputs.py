"""Input preprocessing shared by the MPN variants (mpn, mpn_pre).

Two options: a fixed random Xavier projection of the observation (docs/mpn.md: the paper projects
NeuroGym observations to d = 10), and a constant 1.0 appended to the observation before that
projection (which makes the projection affine). The constant is what lets the modulation state be
read out when the observation is all zeros, as in the decision period of the NeuroGym tasks:
(W ⊙ (1 + M)) · 0 = 0 whatever M holds, whereas with the constant every layer input is non-zero.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp


def layer_input_dim(obs_dim: int, input_proj: int, input_bias: bool) -> int:
    """Nx, the size of the plastic layer's input for an observation of size `obs_dim`."""
    return input_proj if input_proj > 0 else obs_dim + int(input_bias)


def layer_inputs(module: nn.Module, x: jax.Array, input_proj: int, input_bias: bool) -> jax.Array:
    """Map observations x [T, D] to layer inputs [T, Nx]; call inside `module`'s compact method.

    With input_bias a constant 1.0 is appended to each observation first. With input_proj > 0
    the projection is created as `module`'s param 'input_proj' [input_proj, D (+1)] (so it is
    saved and restored with the model) but sits behind stop_gradient, so it stays at its
    random initial value during training.
    """
    if input_bias:
        x = jnp.concatenate([x, jnp.ones(x.shape[:-1] + (1,), x.dtype)], axis=-1)
    if input_proj > 0:
        proj = module.param('input_proj', nn.initializers.xavier_uniform(),
                            (input_proj, x.shape[-1]), jnp.float32)
        x = x @ jax.lax.stop_gradient(proj).T
    return x
