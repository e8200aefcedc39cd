"""The ``skpoison`` command line."""

import argparse
import json
import os
import sys

__all__ = ["main"]


def _format_analyze(report):
    lines = [
        f"dataset {report['dataset']} (train {report['n_train']}, test {report['n_test']}), "
        f"model {report['model']}, target {report['target']}",
        f"clean accuracy   {report['clean_accuracy']:.4f}",
        f"target accuracy  {report['target_accuracy']:.4f}",
        f"tau              {report['threshold']:.6g}"
        + ("  (necessary and sufficient)" if report["exact"] else "  (necessary condition)"),
        f"tau(2)           {report['threshold_binary']:.6g}",
        "",
        f"{'eps_d':>8}  {'can reach target':>16}  {'residual lower bound':>20}",
    ]
    for b in report["budgets"]:
        reach = "yes" if b["poisonable"] else "no"
        lines.append(f"{b['epsilon_d']:>8g}  {reach:>16}  {b['residual_lower_bound']:>20.4g}")
    return "\n".join(lines)


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be positive and finite")
    return value


def _progress(message):
    print(f"[skpoison] {message}", file=sys.stderr, flush=True)


def build_parser():
    """The argument parser of the ``skpoison`` command."""
    from .experiments import DATASETS, DEFENSES, MODELS, TARGETS

    parser = argparse.ArgumentParser(
        prog="skpoison",
        description="Indiscriminate data poisoning: thresholds and attacks.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    analyze = sub.add_parser(
        "analyze",
        help="fit a clean model and a target, print tau and which eps_d can reach it",
    )
    analyze.add_argument("--dataset", choices=DATASETS, default="digits")
    analyze.add_argument("--model", choices=MODELS, default="logreg")
    analyze.add_argument("--target", choices=TARGETS, default="gradpc")
    analyze.add_argument(
        "--epsilon-w", type=_positive_float, default=None,
        help="parameter budget of the GradPC/RandomPC target (default: 1 for logreg on "
        "MNIST, 0.5 for nets on MNIST, 0.1 on the small datasets)",
    )
    analyze.add_argument(
        "--epsilon-d", type=_positive_float, nargs="+", default=[0.03, 0.1, 1.0],
        help="poisoning ratios to check (default: 0.03 0.1 1)",
    )
    analyze.add_argument("--random-state", type=int, default=0)
    analyze.add_argument("--data-home", default=None, help="folder holding the MNIST files")
    analyze.add_argument("--device", default="auto")
    analyze.add_argument("--json", action="store_true", help="print JSON")

    attack = sub.add_parser(
        "attack",
        help="run Gradient Canceling at each eps_d, retrain the victim, print the table",
    )
    attack.add_argument("--dataset", choices=DATASETS, default="digits")
    attack.add_argument("--model", choices=MODELS, default="logreg")
    attack.add_argument("--target", choices=TARGETS, default="gradpc")
    attack.add_argument("--epsilon-w", type=_positive_float, default=None)
    attack.add_argument(
        "--target-tau", type=_positive_float, default=None,
        help="scale the target down (same predictions) until its tau is at most this",
    )
    attack.add_argument(
        "--epsilon-d", nargs="+", default=["0.03", "0.1", "1", "tau"],
        help="poison budgets; 'tau' stands for the target's threshold (default: 0.03 0.1 1 tau)",
    )
    attack.add_argument("--max-iter", type=int, default=1000, help="GC steps per budget")
    attack.add_argument("--clip", choices=["data"], default=None, help="GC-c: clip to data range")
    attack.add_argument(
        "--defense", choices=DEFENSES, default=None,
        help="the defense table: GC and GC-c, each also after this filter (GC-d, GC-cd), "
        "which removes as many rows as there are poison points",
    )
    attack.add_argument("--random-state", type=int, default=0)
    attack.add_argument(
        "--data-home", default=None, help="folder holding the MNIST or CIFAR-10 files"
    )
    attack.add_argument(
        "--n-train", type=int, default=None,
        help="attack a seeded stratified subsample of this many training rows",
    )
    attack.add_argument(
        "--n-test", type=int, default=None,
        help="measure accuracy on a seeded stratified subsample of this many test rows",
    )
    attack.add_argument("--device", default="auto")
    attack.add_argument("--json", action="store_true", help="print JSON")
    attack.add_argument("--output", default=None, help="folder for results.json, table.md, plot")
    attack.add_argument("--quiet", action="store_true", help="no progress messages")
    return parser


def _budget(text):
    if text == "tau":
        return text
    return _positive_float(text)


def main(argv=None):
    """Run the ``skpoison`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "analyze":
            from .experiments import analyze_poisonability

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
            print(json.dumps(report, indent=2) if args.json else _format_analyze(report))
        elif args.command == "attack":
            from .experiments import attack_report, format_attack_table, write_attack_report

            try:
                budgets = [_budget(text) for text in args.epsilon_d]
            except argparse.ArgumentTypeError as exc:
                parser.error(f"argument --epsilon-d: {exc}")
            if args.max_iter < 1:
                parser.error("argument --max-iter: must be at least 1")
            if args.defense and args.clip:
                parser.error("argument --defense: runs GC with and without clipping; drop --clip")
            progress = None if (args.quiet or args.json) else _progress
            report = attack_report(
                args.dataset,
                args.model,
                target=args.target,
                epsilon_w=args.epsilon_w,
                target_threshold=args.target_tau,
                epsilon_d=budgets,
                max_iter=args.max_iter,
                clip=args.clip,
                defense=args.defense,
                random_state=args.random_state,
                data_home=args.data_home,
                n_train=args.n_train,
                n_test=args.n_test,
                device=args.device,
                progress=progress,
            )
            if args.output:
                written = write_attack_report(report, args.output)
                if progress is not None:
                    progress("wrote " + ", ".join(written))
            print(json.dumps(report, indent=2) if args.json else format_attack_table(report))
    except BrokenPipeError:
        # the reader went away (e.g. `| head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (ValueError, TypeError, OSError) as exc:
        print(f"skpoison: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
