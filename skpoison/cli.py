"""The ``skpoison`` command line.

Only the standard library and :mod:`skpoison._choices` are imported at module level,
so that ``skpoison --help``, ``--version`` and argument errors answer at once; torch,
skorch and scikit-learn are imported once the arguments are valid.

Exit status: 0 on success, 1 on an error (one line on standard error), 2 on a usage
error (with the usage of the command at fault), 130 when interrupted (Ctrl-C).
"""

import argparse
import os
import re
import sys
import warnings

from . import __version__
from ._choices import (
    ATTACKS,
    COMPARE_TARGETS,
    DATASETS,
    DEFENSES,
    MODELS,
    PAPER_MODELS,
    PRESET_NAMES,
    REPRODUCTIONS,
    TARGETS,
)

__all__ = ["build_parser", "main"]

_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
_MNIST = ("mnist", "mnist17")


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be positive and finite")
    return value


def _budget(text):
    return text if text == "tau" else _positive_float(text)


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _device(text):
    if not _DEVICE.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a device; choose auto, cpu, cuda or cuda:N"
        )
    return text


def _add_machine(parser):
    """``--data-home``, ``--device`` and ``--threads``: where the data are and what runs."""
    parser.add_argument(
        "--data-home", default=None,
        help="folder holding the MNIST (or CIFAR-10) files; unset: $SKPOISON_DATA/mnist "
        "(cifar10), else ~/skpoison_data/mnist (cifar10)",
    )
    parser.add_argument(
        "--device", type=_device, default="auto",
        help="torch device: auto (CUDA when available), cpu, cuda or cuda:N",
    )
    parser.add_argument(
        "--threads", type=_positive_int, default=1,
        help="CPU threads for BLAS and torch; results under one --random-state are "
        "reproducible for a given thread count (the numbers in the docs use 1)",
    )


def _add_subsample(parser):
    """``--n-train`` and ``--n-test``: seeded stratified subsamples of the split."""
    parser.add_argument(
        "--n-train", type=_positive_int, default=None,
        help="attack a seeded stratified subsample of this many training rows (unset: all)",
    )
    parser.add_argument(
        "--n-test", type=_positive_int, default=None,
        help="measure accuracy on a seeded stratified subsample of this many test rows "
        "(unset: all)",
    )


def _add_output_format(parser):
    """``--json`` and ``--quiet``."""
    parser.add_argument(
        "--json", action="store_true", help="print the full result as JSON instead of a table"
    )
    parser.add_argument(
        "--quiet", action="store_true",
        help="no progress on standard error (progress is only shown on a terminal)",
    )


def _add_common(parser):
    """The options ``analyze`` and ``attack`` share."""
    parser.add_argument("--dataset", choices=DATASETS, default="digits", help="the data set")
    parser.add_argument("--model", choices=MODELS, default="logreg", help="the victim model")
    parser.add_argument(
        "--target", choices=TARGETS, default="gradpc", help="the target-model recipe"
    )
    parser.add_argument(
        "--epsilon-w", type=_positive_float, default=None,
        help="parameter budget of the GradPC/RandomPC target; unset: 1 for logreg on "
        "MNIST, 0.5 for the nets on MNIST, 0.01 for the nets and 0.1 for the linear "
        "models on the small data sets (0.07 on digits, 0.5 on or)",
    )
    parser.add_argument(
        "--random-state", type=int, default=0,
        help="seed of the split, the victim, the target and the attack",
    )
    _add_machine(parser)
    _add_output_format(parser)


def build_parser():
    """The argument parser of the ``skpoison`` command."""
    formatter = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(
        prog="skpoison",
        description="Indiscriminate data poisoning: thresholds and attacks.",
        formatter_class=formatter,
    )
    parser.add_argument("--version", action="version", version=f"skpoison {__version__}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="{analyze,attack,compare,reproduce}"
    )
    analyze = sub.add_parser(
        "analyze",
        help="fit a clean model and a target, print tau and which eps_d can reach it",
        description="Fit the clean victim and a target model, and print the target's "
        "poisonability threshold tau and which budgets can reach it (no attack).",
        formatter_class=formatter,
    )
    _add_common(analyze)
    analyze.add_argument(
        "--epsilon-d", type=_positive_float, nargs="+", default=[0.03, 0.1, 1.0],
        help="poisoning ratios to check",
    )

    attack = sub.add_parser(
        "attack",
        help="run Gradient Canceling at each eps_d, retrain the victim, print the table",
        description="The paper's main job: clean victim, target, tau, Gradient "
        "Canceling at each budget, victim retrained on clean plus poison data, test "
        "accuracies.",
        epilog="On several processes (data-parallel tau and Gradient Canceling over "
        "torch.distributed: gloo on CPU, NCCL with one GPU per process), launch it with "
        "torchrun, e.g. 'torchrun --nproc_per_node=2 -m skpoison attack ...' on one node; "
        "every process runs the job, rank 0 alone prints and writes --output.",
        formatter_class=formatter,
    )
    _add_common(attack)
    attack.add_argument(
        "--epsilon-d", type=_budget, nargs="+", default=[0.03, 0.1, 1.0, 3.0, "tau"],
        help="poison budgets (poison points per clean point); 'tau' stands for the "
        "target's threshold",
    )
    attack.add_argument(
        "--target-tau", type=_positive_float, default=None,
        help="scale the target down (same predictions) until its tau is at most this",
    )
    attack.add_argument(
        "--max-iter", type=_positive_int, default=300, help="Gradient Canceling steps per budget"
    )
    _add_subsample(attack)
    attack.add_argument(
        "--clip", choices=["data"], default=None,
        help="GC-c: clip the poison to the clean data's range",
    )
    attack.add_argument(
        "--defense", choices=DEFENSES, default=None,
        help="the defense table: GC and GC-c, each also after this filter (GC-d, GC-cd), "
        "which removes as many rows as there are poison points",
    )
    attack.add_argument(
        "--output", default=None,
        help="folder to write results.json, table.md, gradient_norms.png and "
        "phase_transition.png into",
    )
    _add_compare(sub, formatter)
    _add_reproduce(sub, formatter)
    return parser


def _add_compare(sub, formatter):
    """The ``compare`` sub-command: several attacks, one target, the same budgets."""
    compare = sub.add_parser(
        "compare",
        help="run several attacks on one target at the same eps_d, print one table",
        description="The paper's appendix C.6: several attacks on the same split, target "
        "and budgets; per attack and eps_d the accuracy of the victim retrained on clean "
        "plus poison, its drop, the relative gradient norm at the target, the distance "
        "of the retrained model to the target (relative to the target's norm) and the "
        "attack's seconds. Every attack keeps its poison in the clean data's range.",
        formatter_class=formatter,
    )
    compare.add_argument(
        "--attack", choices=ATTACKS, nargs="+", default=["gc", "kkt", "mt"],
        help="attacks to compare: gc (Gradient Canceling), kkt (Koh et al.), mt "
        "(Model-Targeted, Suya et al.), fw (Frank-Wolfe canceling), labelflip "
        "(adversarial label flips), gm (Gradient Matching) and tgda (TGDA), the last two "
        "without a target",
    )
    compare.add_argument("--dataset", choices=DATASETS, default="mnist17", help="the data set")
    compare.add_argument("--model", choices=MODELS, default="logreg", help="the victim model")
    compare.add_argument(
        "--target", choices=COMPARE_TARGETS, default="labelflip",
        help="labelflip: the victim retrained on clean data plus adversarially "
        "label-flipped copies (Suya et al.); gradpc: GradPC with the paper's radius",
    )
    compare.add_argument(
        "--flip-epsilon", type=_positive_float, default=0.2,
        help="budget of the label-flipped copies that make the labelflip target",
    )
    compare.add_argument(
        "--epsilon-w", type=_positive_float, default=None,
        help="radius of the GradPC target; unset: the paper's (1 for logreg on MNIST)",
    )
    compare.add_argument(
        "--epsilon-d", type=_positive_float, nargs="+", default=[0.03, 0.1, 1.0],
        help="poison budgets (poison points per clean point)",
    )
    compare.add_argument(
        "--max-iter", type=_positive_int, default=1000, help="Gradient Canceling steps per budget"
    )
    _add_subsample(compare)
    compare.add_argument("--random-state", type=int, default=0,
                         help="seed of the split, the target and the attacks")
    _add_machine(compare)
    _add_output_format(compare)


def _run_compare(args, stages):
    """Run ``skpoison compare``; returns what to print on standard output."""
    from .experiments import comparison_report, format_comparison_table, report_to_json

    report = comparison_report(
        args.dataset,
        args.model,
        target=args.target,
        attacks=args.attack,
        epsilon_d=args.epsilon_d,
        epsilon_w=args.epsilon_w,
        flip_epsilon=args.flip_epsilon,
        max_iter=args.max_iter,
        random_state=args.random_state,
        data_home=args.data_home,
        n_train=args.n_train,
        n_test=args.n_test,
        device=args.device,
        progress=stages,
    )
    if stages is not None:
        stages.close()
    return report_to_json(report, indent=2) if args.json else format_comparison_table(report)


# ----------------------------------------------------------------- reproduce
def _add_reproduce_common(parser, *, gc_steps=True, retrain=False):
    """The options every ``reproduce`` experiment shares (sizes, files, machine)."""
    parser.add_argument(
        "--preset", choices=PRESET_NAMES, default="cpu",
        help="run sizes: cpu (5000 training rows, 200 GC steps, 30 retraining epochs) "
        "or gpu (the paper's: all 60000 rows, 1000 steps, 100 epochs)",
    )
    parser.add_argument(
        "--n-train", type=_positive_int, default=None,
        help="a seeded subset of this many training rows (unset: the preset's)",
    )
    if gc_steps:
        parser.add_argument(
            "--gc-iter", type=_positive_int, default=None,
            help="Gradient Canceling steps per budget (unset: the preset's)",
        )
    if retrain:
        parser.add_argument(
            "--retrain-epochs", type=_positive_int, default=None,
            help="epochs of the victim retrained on clean plus poison (unset: the preset's)",
        )
    parser.add_argument(
        "--output", default=None,
        help="folder to write the JSON, Markdown and text tables (and the PNG figure) "
        "into; unset: print the text table only",
    )
    _add_machine(parser)
    parser.add_argument(
        "--quiet", action="store_true",
        help="no progress and no list of written files on standard error",
    )


def _add_reproduce(sub, formatter):
    """``skpoison reproduce {table2,figure2,figure3,table6}``."""
    reproduce = sub.add_parser(
        "reproduce",
        help="run one of the paper's MNIST experiments (a table or a figure)",
        description="The paper's MNIST experiments with its released code's victims and "
        "GradPC schedule. --preset cpu runs a subset that fits a CPU; --preset gpu the "
        "paper's sizes.",
        formatter_class=formatter,
    )
    experiments = reproduce.add_subparsers(
        dest="experiment", required=True, metavar="{" + ",".join(REPRODUCTIONS) + "}"
    )
    table2 = experiments.add_parser(
        "table2",
        help="GradPC targets, tau(2), tau and GC's accuracy per budget, over seeds",
        description="Table 2: clean accuracy, GradPC target accuracy, tau(2), tau and "
        "the test accuracy of the victim retrained after Gradient Canceling at each "
        "eps_d; one row per seed, then the mean and the standard deviation.",
        formatter_class=formatter,
    )
    table2.add_argument(
        "--model", choices=PAPER_MODELS, default="lr",
        help="the paper's victim: logistic regression, three-layer MLP or CNN",
    )
    table2.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], help="one row per seed"
    )
    table2.add_argument(
        "--epsilon-d", type=_positive_float, nargs="+", default=[0.03, 0.1, 1.0],
        help="poison budgets (poison points per clean point)",
    )
    table2.add_argument(
        "--epsilon-w", type=_positive_float, default=None,
        help="absolute GradPC radius; unset: the paper's (1 for lr, 0.5 for the nets)",
    )
    _add_reproduce_common(table2, retrain=True)

    figure2 = experiments.add_parser(
        "figure2",
        help="the phase transition at tau on the Gaussian data and MNIST-17",
        description="Figure 2: accuracy after retraining and GC's relative gradient norm "
        "against eps_d for logistic regression, with tau marked.",
        formatter_class=formatter,
    )
    figure2.add_argument(
        "--datasets", choices=("gaussian", "mnist17"), nargs="+",
        default=["gaussian", "mnist17"], help="the data sets, one column of plots each",
    )
    figure2.add_argument(
        "--epsilon-d", type=_positive_float, nargs="+",
        default=[0.01, 0.03, 0.1, 0.3, 1.0, 3.0], help="poison budgets",
    )
    figure2.add_argument(
        "--epsilon-w", type=_positive_float, default=1.0, help="absolute GradPC radius"
    )
    figure2.add_argument("--seed", type=int, default=0, help="seed of the data and the runs")
    _add_reproduce_common(figure2)

    figure3 = experiments.add_parser(
        "figure3",
        help="GC's gradient norm per step at one eps_d for several eps_w",
        description="Figure 3: the relative gradient norm of Gradient Canceling per step "
        "on MNIST, one curve per GradPC radius.",
        formatter_class=formatter,
    )
    figure3.add_argument(
        "--model", choices=PAPER_MODELS, default="lr", help="the paper's victim"
    )
    figure3.add_argument(
        "--epsilon-w", type=_positive_float, nargs="+", default=[0.25, 0.5, 1.0, 2.0],
        help="absolute GradPC radii, one curve each",
    )
    figure3.add_argument(
        "--epsilon-d", type=_positive_float, default=1.0, help="the poison budget"
    )
    figure3.add_argument("--seed", type=int, default=0, help="seed of the data and the runs")
    _add_reproduce_common(figure3)

    table6 = experiments.add_parser(
        "table6",
        help="tau of label-flip targets on MNIST-17 with logistic regression",
        description="Table 6: target accuracy, tau and tau(2) of label-flip targets on "
        "MNIST-17 for several flip fractions.",
        formatter_class=formatter,
    )
    table6.add_argument(
        "--flip-fractions", type=_fraction, nargs="+", default=[0.1, 0.2, 0.3, 0.4, 0.5],
        help="fractions of training labels flipped, one row each",
    )
    table6.add_argument("--seed", type=int, default=0, help="seed of the data and the runs")
    _add_reproduce_common(table6, gc_steps=False)


def _fraction(text):
    value = _positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at most 1")
    return value


def _reproduce_kwargs(args):
    """Keyword arguments of the ``skpoison.experiments`` function for ``args``."""
    common = {"preset": args.preset, "n_train": args.n_train, "data_home": args.data_home,
              "device": args.device, "output": args.output}
    if args.experiment == "table2":
        return {"model": args.model, "seeds": tuple(args.seeds),
                "epsilon_d": tuple(args.epsilon_d), "epsilon_w": args.epsilon_w,
                "gc_iter": args.gc_iter, "retrain_epochs": args.retrain_epochs, **common}
    if args.experiment == "figure2":
        return {"datasets": tuple(dict.fromkeys(args.datasets)),
                "epsilon_d": tuple(args.epsilon_d), "epsilon_w": args.epsilon_w,
                "gc_iter": args.gc_iter, "seed": args.seed, **common}
    if args.experiment == "figure3":
        return {"model": args.model, "epsilon_w": tuple(args.epsilon_w),
                "epsilon_d": args.epsilon_d, "gc_iter": args.gc_iter, "seed": args.seed,
                **common}
    return {"flip_fractions": tuple(args.flip_fractions), "seed": args.seed, **common}


def _run_reproduce(args, sub, stages):
    """Run ``skpoison reproduce``; returns the text table to print."""
    if args.output:
        _check_output(args.output, sub)
    import torch
    from threadpoolctl import threadpool_limits

    _check_device(args.device)
    from . import experiments
    from .experiments._reproduce import format_result

    kwargs = _reproduce_kwargs(args)
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        if stages is not None:
            stages(f"{args.experiment}: loading the data")
            kwargs["progress"] = lambda message: stages(f"{args.experiment}: {message}")
        with threadpool_limits(limits=args.threads):
            result = getattr(experiments, args.experiment)(**kwargs)
    finally:
        torch.set_num_threads(torch_threads)
    if stages is not None:
        stages.close()
    if result["files"] and not args.quiet:
        print("skpoison: wrote " + ", ".join(result["files"]), file=sys.stderr)
    return format_result(result)


def _subparsers(parser):
    """The sub-command parsers of ``parser``, by name."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


class _Stages:
    """Progress on standard error: one tqdm line per stage, with its elapsed time."""

    def __init__(self):
        self._bar = None

    def __call__(self, message):
        from tqdm import tqdm

        self.close()
        self._bar = tqdm(
            total=1, desc=f"[skpoison] {message}", bar_format="{desc} ({elapsed})",
            file=sys.stderr, leave=True,
        )

    def abort(self):
        """Close the bar where it stands (interrupted or failed)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def close(self):
        if self._bar is not None:
            self._bar.update(1)
            self._bar.close()
            self._bar = None


def _check_device(device):
    """Fail with advice when the torch build cannot use the requested device."""
    if not device.startswith("cuda"):
        return
    import torch

    if not torch.cuda.is_available():
        raise ValueError(
            f"--device {device}: CUDA is not available (torch {torch.__version__}"
            + (", built without CUDA" if torch.version.cuda is None else ", no GPU visible")
            + "); use --device cpu or auto."
        )
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise ValueError(
            f"--device {device}: only {torch.cuda.device_count()} CUDA device(s); "
            "use cuda:0 to cuda:N-1."
        )


def _check_output(path, sub):
    """Reject an --output that cannot become a folder of results, before the attack
    runs (nothing is created yet)."""
    if os.path.exists(path) and not os.path.isdir(path):
        sub.error(f"argument --output: {path!r} exists and is not a folder")
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        sub.error(f"argument --output: {existing!r} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        sub.error(f"argument --output: folder {existing!r} is not writable")


def _mnist_message(exc):
    where = (
        f"put the four MNIST IDX files in {exc.folder}, pass --data-home <folder holding "
        "them>, or set SKPOISON_DATA to a folder whose 'mnist' subfolder holds them"
    )
    return f"MNIST file {exc.file}(.gz) not found in {exc.folder}{exc.reason}; {where}."


def _run(args, subparsers, stages):
    """Run the parsed command; returns what to print on standard output."""
    if args.command == "reproduce":
        sub = _subparsers(subparsers["reproduce"])[args.experiment]
        return _run_reproduce(args, sub, stages)
    from threadpoolctl import threadpool_limits

    if args.command == "attack" and args.defense and args.clip:
        subparsers["attack"].error(
            "argument --defense: runs GC with and without clipping; drop --clip"
        )
    if args.command == "attack" and args.output:
        _check_output(args.output, subparsers["attack"])
    import torch

    _check_device(args.device)
    from .experiments import format_analyze, report_to_json

    torch_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        with threadpool_limits(limits=args.threads):
            if args.command == "compare":
                return _run_compare(args, stages)
            if args.command == "analyze":
                from .experiments import analyze_poisonability

                if stages is not None:
                    stages(f"loading {args.dataset}, fitting the victim, the target and tau")
                report = analyze_poisonability(
                    args.dataset,
                    args.model,
                    target=args.target,
                    epsilon_d=args.epsilon_d,
                    epsilon_w=args.epsilon_w,
                    random_state=args.random_state,
                    data_home=args.data_home,
                    device=args.device,
                )
                return report_to_json(report, indent=2) if args.json else format_analyze(report)
            from .experiments import attack_report, format_attack_table, write_attack_report

            report = attack_report(
                args.dataset,
                args.model,
                target=args.target,
                epsilon_w=args.epsilon_w,
                target_threshold=args.target_tau,
                epsilon_d=args.epsilon_d,
                max_iter=args.max_iter,
                clip=args.clip,
                defense=args.defense,
                random_state=args.random_state,
                data_home=args.data_home,
                n_train=args.n_train,
                n_test=args.n_test,
                device=args.device,
                progress=stages,
                verbose=int(stages is not None),
            )
    finally:
        torch.set_num_threads(torch_threads)
    if stages is not None:
        stages.close()
    if args.output:
        written = write_attack_report(report, args.output)
        missing = [w for w in written if "(not written" in w]
        for line in missing:
            print(f"skpoison: warning: {line}", file=sys.stderr)
        if not args.quiet:
            print("skpoison: wrote " + ", ".join(written), file=sys.stderr)
    return report_to_json(report, indent=2) if args.json else format_attack_table(report)


def _init_distributed(args):
    """Join the process group ``torchrun`` describes (``WORLD_SIZE > 1``).

    Returns the rank, and whether this call created the group (which :func:`main`
    then destroys).  Without ``torchrun`` (or with one process) nothing is imported:
    ``(0, False)``.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, False
    import torch
    import torch.distributed as dist

    created = not dist.is_initialized()
    if created:
        use_cuda = args.device != "cpu" and torch.cuda.is_available()
        if use_cuda:
            if ":" in args.device:
                raise ValueError(
                    f"--device {args.device}: under torchrun each process takes the GPU of "
                    "its LOCAL_RANK; use --device auto or cuda."
                )
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if use_cuda else "gloo")  # torchrun's env://
    return dist.get_rank(), created


def main(argv=None):
    """Run the ``skpoison`` command; returns the exit status."""
    parser = build_parser()
    subparsers = _subparsers(parser)
    args = parser.parse_args(argv)
    with warnings.catch_warnings():  # the caller's warning display, restored on return
        warnings.showwarning = _one_line_warning
        rank, created = 0, False
        stages = None if args.quiet or not sys.stderr.isatty() else _Stages()
        try:
            rank, created = _init_distributed(args)
            if rank:  # under torchrun every rank runs the job; rank 0 alone reports
                stages, args.output, args.quiet = None, None, True
            out = _run(args, subparsers, stages)
            if not rank:
                print(out, flush=True)
        except KeyboardInterrupt:
            _close(stages)
            print("skpoison: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:
            # the reader went away (e.g. `| head`): stop quietly, as Unix tools do
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
        except MemoryError:
            _close(stages)
            print("skpoison: error: out of memory; use a smaller --epsilon-d or dataset",
                  file=sys.stderr)
            return 1
        except Exception as exc:  # every failure is one line, never a traceback
            _close(stages)
            from .datasets._mnist import MNISTNotFoundError

            if isinstance(exc, MNISTNotFoundError):
                message = _mnist_message(exc)
            elif isinstance(exc, (ValueError, TypeError, OSError)):
                message = str(exc)
            else:
                message = f"{type(exc).__name__}: {exc}"
            message = " ".join(message.split())  # one line
            where = f" (rank {rank})" if rank else ""
            print(f"skpoison{where}: error: {message}", file=sys.stderr)
            return 1
        finally:
            if created:
                import torch.distributed as dist

                dist.destroy_process_group()
        return 0


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    # like the errors: one line on stderr, without the source line of library code;
    # tqdm's write moves an open progress line below the warning instead of gluing
    from tqdm import tqdm

    text = " ".join(str(message).split())
    tqdm.write(f"skpoison: warning: {text} ({category.__name__})", file=sys.stderr)


def _close(stages):
    if stages is not None:
        stages.abort()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
