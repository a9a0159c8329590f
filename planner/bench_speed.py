"""Speed benchmark: our CEM and MPPI against pytorch_mppi on one ~1M-parameter MLP dynamics problem.

Run ``python -m planner.bench_speed [--out results.json]``. pytorch_mppi is optional (not a project dependency):
``pip install pytorch_mppi``; without it, its rows are skipped with a message.

Fairness: every planner gets the same dynamics, the same running cost, K = N samples, horizon T = H, and the same
number of rollouts per plan (``iterations * N``). pytorch_mppi has no iteration count, so one plan is
``iterations`` calls of ``command(state, shift_nominal_trajectory=False)`` from a zero nominal sequence (its
iterations refine the same nominal trajectory, like ours). Its action cost term (lambda * noise @ Sigma^-1 @ U) is
left on, as in its default. All planners start from zero actions, with noise std 0.5 and actions in [-1, 1].
The final cost of each plan is the running cost of its action sequence, evaluated the same way for everyone.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from planner.optimizers import CEM, MPPI
from planner.types import Plan


class MLPDynamics(nn.Module):
    """Residual MLP dynamics ``s' = s + 0.1 * (tanh(MLP([s, a])) + B a)``: ``[B, S]``, ``[B, A]`` -> ``[B, S]``.

    The linear action path ``B`` keeps the system controllable, so planners' final costs can be compared.
    """

    def __init__(self, state_dim: int = 32, action_dim: int = 4, hidden: int = 704, layers: int = 3) -> None:
        super().__init__()
        dims = [state_dim + action_dim] + [hidden] * layers
        mods: list[nn.Module] = []
        for d_in, d_out in zip(dims[:-1], dims[1:], strict=True):
            mods += [nn.Linear(d_in, d_out), nn.ReLU()]
        self.net = nn.Sequential(*mods, nn.Linear(hidden, state_dim))
        self.action_gain = nn.Linear(action_dim, state_dim, bias=False)
        nn.init.normal_(self.action_gain.weight)

    def forward(self, state: Tensor, action: Tensor) -> Tensor:
        return state + 0.1 * (torch.tanh(self.net(torch.cat([state, action], dim=-1))) + self.action_gain(action))


def make_problem(
    device: torch.device, dtype: torch.dtype, hidden: int, horizon: int
) -> tuple[MLPDynamics, Tensor, Callable[[Tensor, Tensor], Tensor]]:
    """The dynamics, the start state ``[S]`` and the running cost ``(state [B, S], action [B, A]) -> [B]``.

    The goal is the state reached after ``horizon`` steps of a fixed random action sequence, so it is reachable.
    """
    torch.manual_seed(0)
    dyn = MLPDynamics(hidden=hidden).to(device=device, dtype=dtype).eval()
    for p in dyn.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(1)
    x0 = torch.randn(32, generator=gen).to(device=device, dtype=dtype)
    target_actions = (1.6 * torch.rand(horizon, 4, generator=gen) - 0.8).to(device=device, dtype=dtype)
    with torch.no_grad():  # a reachable goal: where a fixed random action sequence ends up
        goal = x0.unsqueeze(0)
        for t in range(horizon):
            goal = dyn(goal, target_actions[t : t + 1])
        goal = goal[0]

    def running_cost(state: Tensor, action: Tensor) -> Tensor:
        return (state - goal).square().sum(dim=-1) + 0.01 * action.square().sum(dim=-1)

    return dyn, x0, running_cost


def make_objective(
    dyn: MLPDynamics, x0: Tensor, running_cost: Callable[[Tensor, Tensor], Tensor]
) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
    """Our objective: actions ``[N, H, A]`` -> (summed running cost ``[N]``, zero violation ``[N]``)."""

    def objective(actions: Tensor) -> tuple[Tensor, Tensor]:
        state = x0.expand(actions.shape[0], -1)
        cost = actions.new_zeros(actions.shape[0])
        for t in range(actions.shape[1]):
            state = dyn(state, actions[:, t])
            cost = cost + running_cost(state, actions[:, t])
        return cost, torch.zeros_like(cost)

    return objective


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_all(
    planners: dict[str, Callable[[], Tensor]], device: torch.device, warmup: int, repeats: int
) -> dict[str, tuple[float, Tensor]]:
    """Median wall time (ms) per planner, and its last result; repeats are interleaved across planners so that
    load from other processes on a shared machine hits them all alike."""
    last = {name: fn() for name, fn in planners.items() for _ in range(warmup)}
    times: dict[str, list[float]] = {name: [] for name in planners}
    for _ in range(repeats):
        for name, fn in planners.items():
            _sync(device)
            t0 = time.perf_counter()
            last[name] = fn()
            _sync(device)
            times[name].append(1e3 * (time.perf_counter() - t0))
    return {name: (statistics.median(times[name]), last[name]) for name in planners}


def bench_device(device: torch.device, args: argparse.Namespace) -> list[dict]:
    """All planners on one device; returns one row per planner."""
    dtype = torch.float32
    dyn, x0, running_cost = make_problem(device, dtype, args.hidden, args.horizon)
    objective = make_objective(dyn, x0, running_cost)
    n, h, a, iters = args.samples, args.horizon, 4, args.iterations
    gen = torch.Generator(device=device)
    planners: dict[str, Callable[[], Tensor]] = {}
    cem = CEM(h, a, num_samples=n, num_elites=max(n // 32, 2), iterations=iters, device=device, dtype=dtype)
    mppi = MPPI(h, a, num_samples=n, iterations=iters, noise_std=0.5, device=device, dtype=dtype)

    def run_ours(opt: CEM | MPPI) -> Callable[[], Tensor]:
        def plan() -> Tensor:
            result: Plan = opt.optimize(objective, None, gen.manual_seed(0))
            return result.actions

        return plan

    planners["ours_cem"] = run_ours(cem)
    planners["ours_mppi"] = run_ours(mppi)
    try:
        from pytorch_mppi import MPPI as TheirMPPI  # optional, imported lazily
    except ImportError:
        print("pytorch_mppi is not installed: skipping its rows (pip install pytorch_mppi)")
    else:
        theirs = TheirMPPI(
            lambda s, u: dyn(s, u),
            running_cost,
            nx=32,
            noise_sigma=0.25 * torch.eye(a, device=device, dtype=dtype),
            num_samples=n,
            horizon=h,
            device=device,
            lambda_=args.their_lambda,
            u_min=-torch.ones(a, device=device, dtype=dtype),
            u_max=torch.ones(a, device=device, dtype=dtype),
            U_init=torch.zeros(h, a, device=device, dtype=dtype),
        )

        def plan_theirs() -> Tensor:
            torch.manual_seed(0)
            theirs.U = torch.zeros(h, a, device=device, dtype=dtype)
            for _ in range(iters):
                theirs.command(x0, shift_nominal_trajectory=False)
            return theirs.U.clamp(-1.0, 1.0).clone()

        planners["pytorch_mppi"] = plan_theirs
    rows = []
    with torch.no_grad():
        zero_cost = float(objective(torch.zeros(1, h, a, device=device, dtype=dtype))[0][0])
        for name, (ms, actions) in time_all(planners, device, args.warmup, args.repeats).items():
            cost = float(objective(actions[None])[0][0])
            rows.append(
                {
                    "device": str(device),
                    "planner": name,
                    "ms_per_plan": ms,
                    "final_cost": cost,
                    "zero_action_cost": zero_cost,
                }
            )
    ref = next((r["ms_per_plan"] for r in rows if r["planner"] == "pytorch_mppi"), None)
    for r in rows:
        r["ratio_vs_pytorch_mppi"] = None if ref is None else r["ms_per_plan"] / ref
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    """Parse arguments, benchmark on CPU (and CUDA when available), print a table, optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=512, help="N (pytorch_mppi: K)")
    parser.add_argument("--horizon", type=int, default=10, help="H (pytorch_mppi: T)")
    parser.add_argument("--iterations", type=int, default=5, help="iterations per plan (pytorch_mppi: commands)")
    parser.add_argument("--hidden", type=int, default=704, help="MLP width (704 x 3 hidden layers: ~1.04M params)")
    parser.add_argument("--their-lambda", type=float, default=1.0, help="pytorch_mppi temperature lambda_")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--devices", nargs="*", default=None, help="default: cpu, plus cuda if available")
    parser.add_argument("--out", type=str, default=None, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    devices = args.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    params = sum(p.numel() for p in MLPDynamics(hidden=args.hidden).parameters())
    print(
        f"MLP dynamics {params / 1e6:.2f}M params | N={args.samples} H={args.horizon} iterations={args.iterations} "
        f"| torch {torch.__version__}, {torch.get_num_threads()} CPU threads | median of {args.repeats} after "
        f"{args.warmup} warm-up"
    )
    rows = [row for d in devices for row in bench_device(torch.device(d), args)]
    print(f"{'device':<8}{'planner':<14}{'ms/plan':>10}{'ours/theirs':>13}{'final cost':>12}{'zero-action':>13}")
    for r in rows:
        ratio = "-" if r["ratio_vs_pytorch_mppi"] is None else f"{r['ratio_vs_pytorch_mppi']:.2f}"
        print(
            f"{r['device']:<8}{r['planner']:<14}{r['ms_per_plan']:>10.1f}{ratio:>13}{r['final_cost']:>12.2f}"
            f"{r['zero_action_cost']:>13.2f}"
        )
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"params": params, "args": vars(args), "rows": rows}, f, indent=2)
    return rows


if __name__ == "__main__":
    main()
