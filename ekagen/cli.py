"""The ``ekagen`` command line: label reports (more subcommands arrive with later stages)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _label(args: argparse.Namespace) -> int:
    from ekagen.labeler.files import label_file

    table = label_file(args.input, args.output)
    if args.output is None:
        sys.stdout.write(table.to_csv(index=False))
    else:
        positives = int((table.iloc[:, 1:] == 1).to_numpy().sum())
        print(f"labelled {len(table)} report(s), {positives} positive finding(s) -> {args.output}",
              file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ekagen", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    label = commands.add_parser(
        "label", help="label reports with the 14 CheXpert observations (1, 0, -1, blank)",
        description="INPUT is a .txt (one report per line) or a .csv/.jsonl/.parquet with a "
                    "'report' column. Output: CSV with 'report' and the 14 observation columns.")
    label.add_argument("input")
    label.add_argument("-o", "--output", default=None, help="CSV to write (default: stdout)")
    label.set_defaults(func=_label)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"ekagen {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
