"""Speed benchmark: our CEM and MPPI against pytorch_mppi on one ~1M-parameter MLP dynamics problem.

Run ``jepa-mpc bench-speed [--device cpu|cuda|auto] [--threads T] [--out results.json]`` (or
``python -m planner.bench_speed``). pytorch_mppi (PyPI ``pytorch-mppi``) is a dependency of the package, installed by
``scripts/setup.sh``; where it is missing, its rows are skipped with a message.

Fairness: every planner gets the same dynamics, the same running cost, K = N samples, horizon T = H, and the same
number of rollouts per plan (``iterations * N``). pytorch_mppi has no iteration count, so one plan is
``iterations`` calls of ``command(state, shift_nominal_trajectory=False)`` from a zero nominal sequence (its
iterations refine the same nominal trajectory, like ours). Its action cost term (lambda * noise @ Sigma^-1 @ U) is
left on, as in its default. All planners start from zero actions, with noise std 0.5 and actions in [-1, 1].
The final cost of each plan is the running cost of its action sequence, evaluated the same way for everyone, in
float32, averaged (and maxed) over ``--cost-seeds`` seeds; the timed plans use seed 0.

Beyond the same-budget float32 rows, the table has rows that are faster for a stated reason:

- ``ours_icem``: iCEM's population decay (``CEM(population_decay=2)``): 512, 256, 128, 64, 32 samples, i.e.
  fewer rollouts (the ``rollouts`` column) for a final cost that must stay at or below pytorch_mppi's.
- ``ours_mppi_decay``: the same shrinking population for our MPPI (``MPPI(population_decay=2)``).
- ``*_bf16``: the MLP of the dynamics runs in bfloat16 (residual state, action path and costs stay float32);
  final costs are still evaluated with the float32 model. This is a property of the model, not of the planner, so
  pytorch_mppi gets a bf16 row with the same dynamics too, and ``vs same prec.`` compares like with like.

``rollouts`` is the number of trajectories simulated per plan (dynamics rows evaluated / H).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from planner.optimizers import CEM, MPPI
from planner.progress import Progress
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


class MixedPrecisionMLPDynamics(nn.Module):
    """The same dynamics with its MLP in a low precision (bf16): ``s + 0.1 * (tanh(MLP_lp([s, a])) + B a)``.

    The residual state, the action path ``B a`` and the output stay in the input dtype (float32), so rounding does
    not accumulate in the state over the horizon; only the matmuls of the MLP run in ``dtype``.
    """

    def __init__(self, dyn: MLPDynamics, dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__()
        self.net = copy.deepcopy(dyn.net).to(dtype)
        self.action_gain = dyn.action_gain
        self.compute_dtype = dtype

    def forward(self, state: Tensor, action: Tensor) -> Tensor:
        hidden = self.net(torch.cat([state, action], dim=-1).to(self.compute_dtype))
        return state + 0.1 * (torch.tanh(hidden.to(state.dtype)) + self.action_gain(action))


class RowCounter:
    """Wraps a dynamics callable and counts the rows (samples x steps) it is called on."""

    def __init__(self, dyn: Callable[[Tensor, Tensor], Tensor]) -> None:
        self.dyn, self.rows = dyn, 0

    def __call__(self, state: Tensor, action: Tensor) -> Tensor:
        self.rows += action.shape[0]
        return self.dyn(state, action)


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
    dyn: Callable[[Tensor, Tensor], Tensor], x0: Tensor, running_cost: Callable[[Tensor, Tensor], Tensor]
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
    planners: dict[str, Callable[[], Tensor]],
    device: torch.device,
    warmup: int,
    repeats: int,
    progress: Progress | None = None,
) -> dict[str, tuple[float, Tensor]]:
    """Median wall time (ms) per planner, and its last result; repeats are interleaved across planners so that
    load from other processes on a shared machine hits them all alike."""
    last = {}
    for name, fn in planners.items():
        if progress is not None:
            progress.update(f"{device}: warm-up {name}")
        for _ in range(warmup):
            last[name] = fn()
    times: dict[str, list[float]] = {name: [] for name in planners}
    for repeat in range(repeats):
        for name, fn in planners.items():
            if progress is not None:
                so_far = ", ".join(f"{k} {statistics.median(v):.0f}" for k, v in times.items() if v)
                text = f"{device}: timing repeat {repeat + 1}/{repeats}, {name} | ms/plan so far: {so_far or '-'}"
                progress.update(text, force=not so_far)  # the timing's start always shows
            _sync(device)
            t0 = time.perf_counter()
            last[name] = fn()
            _sync(device)
            times[name].append(1e3 * (time.perf_counter() - t0))
    return {name: (statistics.median(times[name]), last[name]) for name in planners}


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 matmuls are native here (CUDA, or a CPU that oneDNN runs bf16 on: avx512_bf16 / AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


# name -> (precision, plan(seed) -> actions [H, A], counter of dynamics rows)
Planners = dict[str, tuple[str, Callable[[int], Tensor], RowCounter]]
ACTION_DIM = 4  # the problem's action channels (MLPDynamics' default)


def bench_device(device: torch.device, args: argparse.Namespace) -> list[dict]:
    """All planners on one device; returns one row per planner."""
    dyn, x0, running_cost = make_problem(device, torch.float32, args.hidden, args.horizon)
    precisions = _precisions(dyn, device, args)
    eval_objective = make_objective(dyn, x0, running_cost)  # float32: every final cost is measured with this
    planners = _planners(precisions, x0, running_cost, device, args)
    progress = Progress("bench-speed")
    progress.line(f"{device}: {len(planners)} planners ({', '.join(planners)}), {args.repeats} timed repeats each")
    with torch.no_grad():
        timed = time_all(
            {k: (lambda fn=fn: fn(0)) for k, (_, fn, _) in planners.items()},
            device,
            args.warmup,
            args.repeats,
            progress,
        )
        rows = _final_cost_rows(planners, timed, eval_objective, device, args, progress)
    _add_ratios(rows)
    return rows


def _precisions(dyn: MLPDynamics, device: torch.device, args: argparse.Namespace) -> dict[str, nn.Module]:
    """The dynamics per precision: fp32, and bf16 where asked for (``--bf16 on``) or native (``auto``)."""
    precisions: dict[str, nn.Module] = {"fp32": dyn}
    if args.bf16 == "on" or (args.bf16 == "auto" and bf16_supported(device)):
        precisions["bf16"] = MixedPrecisionMLPDynamics(dyn, torch.bfloat16).eval()
    elif args.bf16 == "auto":
        print(f"{device}: no native bf16 matmul detected, skipping the bf16 rows (--bf16 on forces them)")
    return precisions


def _our_optimizers(device: torch.device, args: argparse.Namespace) -> dict[str, CEM | MPPI]:
    """Our planners at the benchmark's budget: CEM, iCEM (population decay), MPPI and MPPI with decay."""
    n, h, a, iters, dtype = args.samples, args.horizon, ACTION_DIM, args.iterations, torch.float32
    elites = max(n // 32, 2)
    cem = dict(num_samples=n, num_elites=elites, iterations=iters, device=device, dtype=dtype)
    mppi = dict(num_samples=n, iterations=iters, noise_std=0.5, device=device, dtype=dtype)
    return {
        "ours_cem": CEM(h, a, **cem),
        "ours_icem": CEM(h, a, **cem, population_decay=args.decay),
        "ours_mppi": MPPI(h, a, **mppi),
        "ours_mppi_decay": MPPI(h, a, **mppi, population_decay=args.decay),
    }


def _their_mppi_class() -> type | None:
    """pytorch_mppi's MPPI, or None (with a message) where it is not installed."""
    try:
        from pytorch_mppi import MPPI as TheirMPPI  # optional, imported lazily
    except ImportError:
        print(
            "pytorch_mppi is not installed: skipping its rows (scripts/setup.sh installs it; pip install pytorch-mppi)"
        )
        return None
    return TheirMPPI


def _planners(
    precisions: dict[str, nn.Module],
    x0: Tensor,
    running_cost: Callable,
    device: torch.device,
    args: argparse.Namespace,
) -> Planners:
    """Every planner per precision, each counting the dynamics rows it evaluates."""
    ours = _our_optimizers(device, args)
    gen = torch.Generator(device=device)
    their_class = _their_mppi_class()
    planners: Planners = {}
    for prec, model in precisions.items():
        suffix = "" if prec == "fp32" else f"_{prec}"
        counter = RowCounter(model)
        objective = make_objective(counter, x0, running_cost)

        def run_ours(opt: CEM | MPPI, objective: Callable = objective) -> Callable[[int], Tensor]:
            def plan(seed: int) -> Tensor:
                result: Plan = opt.optimize(objective, None, gen.manual_seed(seed))
                return result.actions

            return plan

        for name, opt in ours.items():
            planners[name + suffix] = (prec, run_ours(opt), counter)
        if their_class is not None:
            planners["pytorch_mppi" + suffix] = (
                prec,
                _plan_theirs(their_class, counter, running_cost, x0, device, args),
                counter,
            )
    return planners


def _plan_theirs(
    their_class: type,
    counter: RowCounter,
    running_cost: Callable,
    x0: Tensor,
    device: torch.device,
    args: argparse.Namespace,
) -> Callable[[int], Tensor]:
    """pytorch_mppi at the same budget: ``iterations`` calls of ``command`` from a zero nominal sequence."""
    dtype, h, a = torch.float32, args.horizon, ACTION_DIM
    theirs = their_class(
        counter,
        running_cost,
        nx=32,
        noise_sigma=0.25 * torch.eye(a, device=device, dtype=dtype),
        num_samples=args.samples,
        horizon=h,
        device=device,
        lambda_=args.their_lambda,
        u_min=-torch.ones(a, device=device, dtype=dtype),
        u_max=torch.ones(a, device=device, dtype=dtype),
        U_init=torch.zeros(h, a, device=device, dtype=dtype),
    )

    def plan(seed: int) -> Tensor:
        torch.manual_seed(seed)
        theirs.U = torch.zeros(h, a, device=device, dtype=dtype)
        for _ in range(args.iterations):
            theirs.command(x0, shift_nominal_trajectory=False)
        return theirs.U.clamp(-1.0, 1.0).clone()

    return plan


def _final_cost_rows(
    planners: Planners,
    timed: dict,
    eval_objective: Callable,
    device: torch.device,
    args: argparse.Namespace,
    progress: Progress,
) -> list[dict]:
    """One row per planner: its timing and its float32 final cost over ``--cost-seeds`` seeds."""
    h, a = args.horizon, ACTION_DIM
    zero_cost = float(eval_objective(torch.zeros(1, h, a, device=device, dtype=torch.float32))[0][0])
    rows = []
    for i, (name, (prec, fn, counter)) in enumerate(planners.items()):
        progress.update(f"{device}: final costs over {args.cost_seeds} seeds, {name} ({i + 1}/{len(planners)})")
        costs, rollouts = [], 0
        for seed in range(args.cost_seeds):
            counter.rows = 0
            actions = fn(seed)
            rollouts = counter.rows // h
            costs.append(float(eval_objective(actions[None])[0][0]))
        rows.append(
            {
                "device": str(device),
                "planner": name,
                "precision": prec,
                "rollouts": rollouts,
                "ms_per_plan": timed[name][0],
                "final_cost": statistics.mean(costs),
                "final_cost_max": max(costs),
                "final_costs": costs,
                "zero_action_cost": zero_cost,
            }
        )
    return rows


def _add_ratios(rows: list[dict]) -> None:
    """Each row's time and cost against pytorch_mppi's (fp32, and at the row's own precision)."""
    by_name = {r["planner"]: r for r in rows}
    ref = by_name.get("pytorch_mppi")
    for r in rows:
        same = by_name.get("pytorch_mppi" if r["precision"] == "fp32" else f"pytorch_mppi_{r['precision']}")
        r["ratio_vs_pytorch_mppi"] = None if ref is None else r["ms_per_plan"] / ref["ms_per_plan"]
        r["ratio_vs_pytorch_mppi_same_precision"] = None if same is None else r["ms_per_plan"] / same["ms_per_plan"]
        r["cost_le_pytorch_mppi"] = None if ref is None else r["final_cost"] <= ref["final_cost"]


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def main(argv: list[str] | None = None) -> list[dict]:
    """Parse ``argv`` (None = ``sys.argv[1:]``), benchmark, print a table, optionally write JSON; return the rows."""
    parser = argparse.ArgumentParser(
        prog="jepa-mpc bench-speed", description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=512, help="N (pytorch_mppi: K)")
    parser.add_argument("--horizon", type=int, default=10, help="H (pytorch_mppi: T)")
    parser.add_argument("--iterations", type=int, default=5, help="iterations per plan (pytorch_mppi: commands)")
    parser.add_argument("--hidden", type=int, default=704, help="MLP width (704 x 3 hidden layers: ~1.04M params)")
    parser.add_argument("--their-lambda", type=float, default=1.0, help="pytorch_mppi temperature lambda_")
    parser.add_argument("--decay", type=float, default=2.0, help="population decay of ours_icem / ours_mppi_decay")
    parser.add_argument("--bf16", choices=["auto", "on", "off"], default="auto", help="bf16-MLP rows (auto: if native)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats, interleaved across planners")
    parser.add_argument("--cost-seeds", type=int, default=5, help="seeds the final cost is averaged over")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], default="auto", help="auto: cpu, and cuda if any")
    parser.add_argument("--devices", nargs="*", default=None, help=argparse.SUPPRESS)  # old spelling, still accepted
    parser.add_argument("--out", type=str, default=None, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.devices:
        devices = args.devices
    elif args.device == "auto":
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    elif args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    else:
        devices = [args.device]
    params = sum(p.numel() for p in MLPDynamics(hidden=args.hidden).parameters())
    print(
        f"MLP dynamics {params / 1e6:.2f}M params | N={args.samples} H={args.horizon} iterations={args.iterations} "
        f"| torch {torch.__version__}, {torch.get_num_threads()} CPU threads | ms: median of {args.repeats} "
        f"interleaved repeats after {args.warmup} warm-up | cost: fp32, mean (max) over {args.cost_seeds} seeds"
    )
    rows = [row for d in devices for row in bench_device(torch.device(d), args)]
    print(
        f"{'device':<8}{'planner':<22}{'rollouts':>9}{'ms/plan':>10}{'ours/theirs':>13}{'vs same prec.':>15}"
        f"{'final cost':>12}{'(max)':>8}{'zero-action':>13}"
    )
    for r in rows:
        print(
            f"{r['device']:<8}{r['planner']:<22}{r['rollouts']:>9}{r['ms_per_plan']:>10.1f}"
            f"{_fmt(r['ratio_vs_pytorch_mppi'], '.2f'):>13}{_fmt(r['ratio_vs_pytorch_mppi_same_precision'], '.2f'):>15}"
            f"{r['final_cost']:>12.2f}{r['final_cost_max']:>8.2f}{r['zero_action_cost']:>13.2f}"
        )
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"params": params, "args": vars(args), "rows": rows}, f, indent=2)
    print(f"[bench-speed] done; rows: {args.out or 'printed above only (--out FILE writes them as JSON)'}")
    return rows


if __name__ == "__main__":
    main()
