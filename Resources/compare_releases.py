"""A candidate model against the released one, from two ``disanatdetect evaluate`` runs on the same cases.

Prints, for the lesioned cases named PREFIX* (the dev set's ten BraTS gliomas by default): the candidate's DAL
against the release's DAL case by case (mean AP and best Dice of both, the candidate's Dice at its own threshold,
the cases where its best Dice is higher), the differences case by case (mean, spread, Wilcoxon signed-rank p),
both models' false lesion on the healthy scans per modality (mean, median, scans above 1 mL, worst), then each
one's table against the thresholding baseline, the table the README's Results show. The release ships only if
the candidate is better.

    python3 Resources/compare_releases.py Resources/results/results.csv runs/candidate/evaluation/results.csv \\
        --names 3.0.0,4.0.0

``--source held-out`` compares two ``evaluate --held-out-healthy`` runs instead (the shipped model's are
``Resources/results/held-out-*.csv``): their healthy false positives only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from disanatdetect import evaluate as harness


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("release", type=Path, help="results.csv of the released model")
    parser.add_argument("candidate", type=Path, help="results.csv of the candidate, on the same cases")
    parser.add_argument("--names", default="release,candidate", help="what to call the two (comma-separated)")
    parser.add_argument("--table-cases", default="Brats18", metavar="PREFIX")
    parser.add_argument("--source", default="real",
                        help="the rows compared: real (the dev set), held-out or synthetic (healthy renders)")
    args = parser.parse_args()
    release_name, candidate_name = args.names.split(",")
    release, candidate = harness.read_csv(args.release), harness.read_csv(args.candidate)
    names = f"DAL {release_name}", f"DAL {candidate_name}"
    rows = harness.versus_release_rows(release, candidate, *names)
    lesioned = any("ap" in row and row["source"] == args.source for row in candidate)
    if lesioned:
        print(f"DAL {candidate_name} against DAL {release_name}, {args.source} rows, lesions of the cases named "
              f"{args.table_cases}*:\n")
        print(harness.versus_baseline_table(rows, method=names[1], baseline=names[0], source=args.source,
                                            lesioned_prefix=args.table_cases))
        print(f"\nDAL {candidate_name} minus DAL {release_name}, case by case:\n")
        print(harness.paired_differences_table(rows, names[1], names[0], source=args.source,
                                               lesioned_prefix=args.table_cases))
    healthy = harness.healthy_false_positive_table(rows, list(names), source=args.source)
    if healthy:
        print(f"\nFalse lesion on the healthy scans ({args.source} rows), at each model's own thresholds:\n")
        print(healthy)
    if lesioned:
        for name, results in ((release_name, release), (candidate_name, candidate)):
            print(f"\nDAL {name} against the baseline:\n")
            print(harness.versus_baseline_table(results, source=args.source, lesioned_prefix=args.table_cases))


if __name__ == "__main__":
    main()
