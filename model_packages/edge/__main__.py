"""`python -m model_packages.edge run BUNDLE --input rows.jsonl`: the device's entry point, with no
CLI framework either (argparse only)."""

from __future__ import annotations

import argparse
import json
import sys

from model_packages.errors import KaizenError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_packages.edge")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="score JSON Lines rows with an edge bundle")
    run.add_argument("bundle")
    run.add_argument("--input", required=True, help="JSON Lines rows ('-' for stdin)")
    run.add_argument("--out", default="-", help="JSON Lines answers ('-' for stdout)")
    run.add_argument("--probabilities", action="store_true")
    args = parser.parse_args(argv)
    from model_packages.edge.runtime import EdgeModel, score_lines

    try:
        model = EdgeModel(args.bundle)
    except KaizenError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    rejected = 0
    source = sys.stdin if args.input == "-" else open(args.input, encoding="utf-8")  # noqa: SIM115
    sink = sys.stdout if args.out == "-" else open(args.out, "w", encoding="utf-8")  # noqa: SIM115
    try:
        for answer in score_lines(model, source, probabilities=args.probabilities):
            rejected += "error" in answer
            sink.write(json.dumps(answer) + "\n")
    finally:
        if source is not sys.stdin:
            source.close()
        if sink is not sys.stdout:
            sink.close()
    return 3 if rejected else 0


if __name__ == "__main__":
    raise SystemExit(main())
