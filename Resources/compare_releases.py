"""A candidate model against the released one, from two ``disanatdetect evaluate`` runs on the same cases.

Prints, for the lesioned cases named PREFIX* (the dev set's ten BraTS gliomas by default): the candidate's DAL
against the release's DAL case by case (mean AP and best Dice of both, the candidate's Dice at its own threshold,
the cases where its best Dice is higher, its healthy false positives), then each one's table against the
thresholding baseline, the table the README's Results show. The release ships only if the candidate is better.

    python3 Resources/compare_releases.py Resources/results/results.csv runs/candidate/evaluation/results.csv \\
        --names 3.0.0,4.0.0
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
    args = parser.parse_args()
    release_name, candidate_name = args.names.split(",")
    release, candidate = harness.read_csv(args.release), harness.read_csv(args.candidate)
    rows = harness.versus_release_rows(release, candidate, f"DAL {release_name}", f"DAL {candidate_name}")
    print(f"DAL {candidate_name} against DAL {release_name}, lesions of the real cases named {args.table_cases}*:\n")
    print(harness.versus_baseline_table(rows, method=f"DAL {candidate_name}", baseline=f"DAL {release_name}",
                                        lesioned_prefix=args.table_cases))
    for name, results in ((release_name, release), (candidate_name, candidate)):
        print(f"\nDAL {name} against the baseline:\n")
        print(harness.versus_baseline_table(results, lesioned_prefix=args.table_cases))


if __name__ == "__main__":
    main()
