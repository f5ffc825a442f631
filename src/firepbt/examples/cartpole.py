"""PPO on CartPole-v1: reinforcement learning, with the episodic return as Q.

A compact PPO (Schulman et al. 2017) written for this example: an actor and a critic (each an MLP
with two tanh layers of 64), the clipped surrogate objective, advantages by GAE(λ = 0.95) with
γ = 0.99, a squared-error value loss, an entropy bonus and Adam. As in the FIRE paper's RL
experiments, PBT tunes ``lr`` and ``entropy_cost`` (both log-uniform); everything else is a fixed
default (``PPOSettings``), which a config may still set as a ``Fixed`` hyperparameter.

One ``train`` step is one PPO iteration: ``envs`` = 8 CartPole-v1 environments, stepped in turn,
each take ``rollout`` = 64 steps (512 transitions), then ``epochs`` = 4 passes of minibatch updates
(minibatches of 128). Episodes are truncated at CartPole-v1's 500 steps, so a return is at most 500.

Q is ``evaluate()["return"]``: the mean return of the last 10 *training* episodes (0 before any
episode has finished). It costs nothing (no extra environment steps), it is the learning curve RL
papers plot, and it draws no random numbers, so how often a run evaluates never changes training.
The price is a lag of about 10 episodes and the exploration noise of the sampling policy; greedy
evaluation episodes would cost up to 500 steps each and sit at 500 for many mediocre policies.

With the fixed hyperparameter ``test_episodes`` = k > 0, ``evaluate()`` also returns
``test_return``: the mean return of k greedy episodes (always the most likely action) from fixed
start seeds, played in lockstep with fresh environments, so it never touches training's random
generators. It is the test score of ``benchmarks/table1.py``.

Saved state is the whole agent: weights, Adam moments, the numpy generator that seeds each
episode's start, the torch generator that samples actions and shuffles minibatches, every
environment's physics state (CartPole's state is four numbers) and place in its episode, and the
episode statistics. Nothing is reset on load: save → load → train reproduces straight-through
training exactly, so a run does not depend on which worker happens to keep which member in memory.

Optional hand-tuned schedule: ``lr_schedule = "linear"`` (common in PPO) with ``total_steps``
(iterations) makes the effective learning rate ``lr · (1 − t / total_steps)`` in iteration t
(counted by the trainable and saved); ``"constant"`` (default) keeps ``lr``.

Measured with one torch thread on a 2-core machine shared with other work (load 2–6, so timings
are noisy, ±2×): one iteration takes 55–110 ms (≈ 40 % collecting, ≈ 60 % updating). Mean Q of
3 seeds (2 for 1e-4) after 40 / 80 / 160 iterations, entropy_cost = 0.01:

    lr = 1e-4:  54 / 144 /  –       lr = 3e-3: 414 / 498 / 500
    lr = 3e-4: 193 / 229 / 269      lr = 1e-2: 386 / 500 / 442  (unstable: collapses, recovers)
    lr = 1e-3: 199 / 335 / 477

entropy_cost matters less: at lr = 3e-3, 0.1 gives 324 / 426 after 40 / 80 iterations, 1e-4 gives
483 / 434, 0.01 gives 414 / 498. ``examples/cartpole_pbt.toml`` (8 members × 120 iterations,
2 workers) took 2 min 51 s at load ≈ 6: the best member reached 500 by iteration 60 and every
member by iteration 90. ``examples/cartpole_fire.toml`` (2 × 4 members + 3 evaluators) took
2 min 3 s at load ≈ 5: P1's best reached 500 by iteration 70, with one evaluator hand-over.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

from firepbt.examples import _schedules
from firepbt.pytorch import TorchTrainable
from firepbt.space import Fixed, Hyperparameters, LogUniform, Space

MAX_EPISODE_STEPS = 500  # CartPole-v1's time limit
RETURN_WINDOW = 10  # Q averages this many most recent finished episodes
TEST_SEED = 1_000_000  # greedy test episode k starts from env seed TEST_SEED + k
OBS_DIM, N_ACTIONS = 4, 2

LR_SCHEDULES = ("constant", "linear")


@dataclass(frozen=True, slots=True)
class PPOSettings:
    """The untuned part of PPO; each field may be given as a (fixed) hyperparameter.

    ``envs`` is read once, at construction; the others are read at every iteration."""

    envs: int = 8
    rollout: int = 64  # steps per environment per iteration
    epochs: int = 4
    minibatch: int = 128
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip: float = 0.2
    value_cost: float = 0.5
    max_grad_norm: float = 0.5
    test_episodes: int = 0  # > 0: evaluate() also plays this many greedy test episodes

    @classmethod
    def from_hyperparameters(cls, h: Mapping[str, Any]) -> PPOSettings:
        defaults = cls()
        given = {f.name: h[f.name] for f in fields(cls) if f.name in h}
        return cls(**{k: type(getattr(defaults, k))(v) for k, v in given.items()})


_KNOWN = {"lr", "entropy_cost", "lr_schedule", "total_steps"} | {
    f.name for f in fields(PPOSettings)
}


def _check(h: Mapping[str, Any]) -> None:
    """Refuse hyperparameters this trainable would silently ignore or cannot use."""
    unknown = sorted(set(h) - _KNOWN)
    if unknown:
        raise ValueError(
            f"CartPolePPO: unknown hyperparameter(s) {unknown}; known: {sorted(_KNOWN)}"
        )
    if "lr" not in h:
        raise ValueError("CartPolePPO: hyperparameter 'lr' is required")
    _schedules.check(h, LR_SCHEDULES)
    settings = PPOSettings.from_hyperparameters(h)
    for name in ("envs", "rollout", "epochs", "minibatch"):
        if getattr(settings, name) < 1:
            raise ValueError(f"{name}: expected a positive integer, got {getattr(settings, name)}")


def lr_multiplier(shape: str, progress: float) -> float:
    """The schedule's shape at ``progress`` = iteration / total_steps (clipped to [0, 1]); the
    effective learning rate is ``lr`` times this.

    >>> [lr_multiplier("linear", t / 4) for t in range(6)]
    [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    """
    return _schedules.multiplier(shape, progress, LR_SCHEDULES)


def _mlp(hidden: int, out: int, head_gain: float) -> torch.nn.Sequential:
    layers = [torch.nn.Linear(OBS_DIM, hidden), torch.nn.Linear(hidden, hidden)]
    head = torch.nn.Linear(hidden, out)
    # Orthogonal initialisation, with a near-zero policy head: the first policy is near-uniform.
    for layer, gain in [(layers[0], 2**0.5), (layers[1], 2**0.5), (head, head_gain)]:
        torch.nn.init.orthogonal_(layer.weight, gain)
        torch.nn.init.zeros_(layer.bias)
    return torch.nn.Sequential(layers[0], torch.nn.Tanh(), layers[1], torch.nn.Tanh(), head)


class ActorCritic(torch.nn.Module):
    """Separate actor (action logits) and critic (state value) networks."""

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.actor = _mlp(hidden, N_ACTIONS, head_gain=0.01)
        self.critic = _mlp(hidden, 1, head_gain=1.0)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.actor(obs), self.critic(obs).squeeze(-1)


@dataclass(frozen=True, slots=True)
class Rollout:
    """One iteration's transitions, flattened over (time, environment)."""

    obs: torch.Tensor
    actions: torch.Tensor
    log_probs: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor


class CartPolePPO(TorchTrainable):
    """PPO on CartPole-v1; one step is one iteration (collect a rollout, then update).

    >>> agent = CartPolePPO({"lr": 3e-3, "entropy_cost": 0.01, "envs": 2, "rollout": 32}, seed=0)
    >>> agent.train(2)
    >>> sorted(agent.evaluate())
    ['env_steps', 'episodes', 'return']
    >>> agent.set_hyperparameters({**agent.hyperparameters, "test_episodes": 3})
    >>> 8 <= agent.evaluate()["test_return"] <= 500   # three greedy episodes from fixed seeds
    True
    """

    model: ActorCritic

    def __init__(self, hyperparameters: Hyperparameters, seed: int) -> None:
        _check(hyperparameters)
        super().__init__(hyperparameters, seed)  # seeds torch, then build()
        self.generator = torch.Generator().manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        n = PPOSettings.from_hyperparameters(hyperparameters).envs
        self.envs = [CartPoleEnv() for _ in range(n)]
        self.obs = np.stack([self._new_episode(env) for env in self.envs])
        self.episode_return = np.zeros(n)
        self.episode_length = np.zeros(n, dtype=np.int64)
        self.finished: deque[float] = deque(maxlen=RETURN_WINDOW)
        self.episodes = 0
        self.env_steps = 0
        self.iterations = 0

    def build(self) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        model = ActorCritic()
        return model, torch.optim.Adam(
            model.parameters(), lr=float(self.hyperparameters["lr"]), eps=1e-5
        )

    def set_hyperparameters(self, hyperparameters: Hyperparameters) -> None:
        _check(hyperparameters)
        super().set_hyperparameters(hyperparameters)

    def _new_episode(self, env: CartPoleEnv) -> np.ndarray:
        """Reset ``env``, seeding it from this agent's generator (so the env holds no RNG state)."""
        obs, _ = env.reset(seed=int(self.rng.integers(2**31)))
        return np.asarray(obs, dtype=np.float32)

    def train(self, steps: int) -> None:
        h = self.hyperparameters
        for _ in range(steps):
            settings = PPOSettings.from_hyperparameters(h)
            shape = str(h.get("lr_schedule", "constant"))
            progress = self.iterations / int(h["total_steps"]) if shape != "constant" else 0.0
            for group in self.optimizer.param_groups:
                group["lr"] = float(h["lr"]) * lr_multiplier(shape, progress)
            self._update(self._collect(settings), settings, float(h.get("entropy_cost", 0.0)))
            self.iterations += 1

    @torch.no_grad()
    def _collect(self, s: PPOSettings) -> Rollout:
        steps, n = s.rollout, len(self.envs)
        obs = np.empty((steps, n, OBS_DIM), dtype=np.float32)
        actions = np.empty((steps, n), dtype=np.int64)
        log_probs = np.empty((steps, n), dtype=np.float32)
        rewards = np.empty((steps, n), dtype=np.float32)
        done = np.zeros((steps, n), dtype=bool)
        values = np.empty((steps + 1, n), dtype=np.float32)
        for t in range(steps):
            obs[t] = self.obs
            logits, value = self.model(torch.from_numpy(self.obs))
            log_p = torch.log_softmax(logits, dim=-1)
            action = torch.multinomial(log_p.exp(), 1, generator=self.generator)
            actions[t] = action.squeeze(1).numpy()
            log_probs[t] = log_p.gather(1, action).squeeze(1).numpy()
            values[t] = value.numpy()
            for i, env in enumerate(self.envs):
                next_obs, reward, terminated, _, _ = env.step(int(actions[t, i]))  # type: ignore[no-untyped-call]
                self.episode_return[i] += reward
                self.episode_length[i] += 1
                truncated = self.episode_length[i] >= MAX_EPISODE_STEPS
                if truncated and not terminated:
                    # The episode was cut, not lost: bootstrap from the state it was cut in.
                    reward += s.gamma * float(self.model.critic(torch.from_numpy(next_obs)))
                rewards[t, i] = reward
                if terminated or truncated:
                    done[t, i] = True
                    self.finished.append(float(self.episode_return[i]))
                    self.episodes += 1
                    self.episode_return[i], self.episode_length[i] = 0.0, 0
                    next_obs = self._new_episode(env)
                self.obs[i] = next_obs
        values[steps] = self.model.critic(torch.from_numpy(self.obs)).squeeze(-1).numpy()
        self.env_steps += steps * n

        # GAE(λ): advantages are discounted sums of TD errors, cut at episode ends.
        advantages = np.empty((steps, n), dtype=np.float32)
        running = np.zeros(n, dtype=np.float32)
        for t in reversed(range(steps)):
            alive = 1.0 - done[t]
            delta = rewards[t] + s.gamma * values[t + 1] * alive - values[t]
            running = delta + s.gamma * s.gae_lambda * alive * running
            advantages[t] = running
        returns = advantages + values[:steps]
        return Rollout(
            obs=torch.from_numpy(obs.reshape(-1, OBS_DIM)),
            actions=torch.from_numpy(actions.reshape(-1)),
            log_probs=torch.from_numpy(log_probs.reshape(-1)),
            advantages=torch.from_numpy(advantages.reshape(-1)),
            returns=torch.from_numpy(returns.reshape(-1)),
        )

    def _update(self, batch: Rollout, s: PPOSettings, entropy_cost: float) -> None:
        total = batch.obs.shape[0]
        for _ in range(s.epochs):
            order = torch.randperm(total, generator=self.generator)
            for start in range(0, total, s.minibatch):
                idx = order[start : start + s.minibatch]
                logits, value = self.model(batch.obs[idx])
                log_p = torch.log_softmax(logits, dim=-1)
                new_log_prob = log_p.gather(1, batch.actions[idx].unsqueeze(1)).squeeze(1)
                entropy = -(log_p.exp() * log_p).sum(-1).mean()
                adv = batch.advantages[idx]
                adv = (adv - adv.mean()) / (adv.std(correction=0) + 1e-8)
                ratio = (new_log_prob - batch.log_probs[idx]).exp()
                clipped = ratio.clamp(1.0 - s.clip, 1.0 + s.clip)
                policy_loss = -torch.min(ratio * adv, clipped * adv).mean()
                value_loss = 0.5 * (value - batch.returns[idx]).pow(2).mean()
                loss = policy_loss + s.value_cost * value_loss - entropy_cost * entropy
                self.optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), s.max_grad_norm)
                self.optimizer.step()

    def evaluate(self) -> dict[str, float]:
        mean_return = float(np.mean(self.finished)) if self.finished else 0.0
        metrics = {
            "return": mean_return,
            "episodes": float(self.episodes),
            "env_steps": float(self.env_steps),
        }
        episodes = PPOSettings.from_hyperparameters(self.hyperparameters).test_episodes
        if episodes > 0:
            metrics["test_return"] = self.greedy_return(episodes)
        return metrics

    @torch.no_grad()
    def greedy_return(self, episodes: int) -> float:
        """Mean return of ``episodes`` greedy episodes (the most likely action) from fixed start
        seeds, played in lockstep: a test score that draws no random numbers from training."""
        envs = [CartPoleEnv() for _ in range(episodes)]
        obs = np.stack([env.reset(seed=TEST_SEED + k)[0] for k, env in enumerate(envs)])
        returns = np.zeros(episodes)
        running = np.ones(episodes, dtype=bool)
        for _ in range(MAX_EPISODE_STEPS):
            logits, _ = self.model(torch.from_numpy(obs.astype(np.float32)))
            actions = logits.argmax(-1).numpy()
            for k in np.flatnonzero(running):
                next_obs, reward, terminated, _, _ = envs[k].step(int(actions[k]))  # type: ignore[no-untyped-call]
                returns[k] += reward
                obs[k] = next_obs
                running[k] = not terminated
            if not running.any():
                break
        return float(returns.mean())

    def extra_state(self) -> Any:
        return {
            "env_states": [np.array(env.state, dtype=np.float64) for env in self.envs],
            "obs": self.obs.copy(),
            "episode_return": self.episode_return.copy(),
            "episode_length": self.episode_length.copy(),
            "finished": list(self.finished),
            "episodes": self.episodes,
            "env_steps": self.env_steps,
            "iterations": self.iterations,
            "rng": copy.deepcopy(self.rng.bit_generator.state),
            "generator": self.generator.get_state(),
        }

    def load_extra_state(self, state: Any) -> None:
        if len(state["env_states"]) != len(self.envs):
            raise ValueError(
                f"CartPolePPO.load: the state has {len(state['env_states'])} environments, this "
                f"agent has {len(self.envs)} (hyperparameter 'envs' must match)"
            )
        for env, env_state in zip(self.envs, state["env_states"], strict=True):
            env.state = np.array(env_state, dtype=np.float64)  # mid-episode, as it was saved
            env.steps_beyond_terminated = None
        self.obs = np.array(state["obs"], dtype=np.float32)
        self.episode_return = np.array(state["episode_return"], dtype=np.float64)
        self.episode_length = np.array(state["episode_length"], dtype=np.int64)
        self.finished = deque(state["finished"], maxlen=RETURN_WINDOW)
        self.episodes = int(state["episodes"])
        self.env_steps = int(state["env_steps"])
        self.iterations = int(state["iterations"])
        self.rng.bit_generator.state = state["rng"]
        self.generator.set_state(state["generator"])


def cartpole_space() -> Space:
    """``lr`` log-uniform on [1e-4, 1e-2] and ``entropy_cost`` log-uniform on [1e-4, 0.1]
    (priors as wide as the FIRE paper's RL ones); the bounds let perturbation go a bit beyond."""
    return Space(
        {
            "lr": LogUniform(1e-4, 1e-2, bounds=(1e-5, 3e-2)),
            "entropy_cost": LogUniform(1e-4, 0.1, bounds=(1e-5, 0.3)),
            "lr_schedule": Fixed("constant"),
        }
    )
