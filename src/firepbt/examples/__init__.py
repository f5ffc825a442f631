"""Example trainables, each a short file a user can copy: the PBT paper's toy (``toy``), the noisy
quadratic model where any schedule is scored exactly (``nqm``), MNIST-1D classification with a
small 1-D CNN (``mnist1d``), PPO on CartPole-v1 (``cartpole``), a GAN on a ring of Gaussians
selected on a non-differentiable quality score (``gan``), and a sleeping trainable for overhead
measurements (``sleep``). Configs that run them are in the repository's ``examples/`` folder."""
