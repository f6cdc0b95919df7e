"""Speed of the paired bootstrap (every metric of every system, 1,000 resamples by default).

Statistics are computed once per study (:func:`ekagen.evaluation.bootstrap.study_statistics`,
including pycocoevalcap's ROUGE-L per study; METEOR is off: its jar run is per study anyway),
then :func:`~ekagen.evaluation.bootstrap.paired_bootstrap` recomputes every metric on every
resample. Uses the real test reports of ``data/eval/generations.parquet`` when present
(ekagen, most_frequent, nearest_neighbour and, when stored, the knowledge text), else a
synthetic corpus. The growth measurements use synthetic corpora of short reports made by
sampling sentences (of the real references when present) for four systems. CE labels come
from the rule labeler. Prints JSON; seconds are wall-clock.

    python benchmarks/bootstrap.py [--resamples 1000] [--sizes 250,500,1000,2000,3858]
                                   [--resample-counts 100,500,1000,2000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import numpy as np

from ekagen.evaluation.bootstrap import paired_bootstrap, study_statistics
from ekagen.evaluation.ce import label_values

GENERATIONS = Path("data/eval/generations.parquet")
REAL_SYSTEMS = {"ekagen": "generated", "most_frequent": "most_frequent",
                "nearest_neighbour": "nearest_neighbour", "knowledge": "knowledge"}
POOL = ["the heart is normal in size", "the lungs are clear", "no pleural effusion",
        "no pneumothorax", "there is mild cardiomegaly", "small left pleural effusion",
        "the mediastinum is unremarkable", "degenerative changes of the thoracic spine",
        "right lower lobe opacity may represent pneumonia", "no focal consolidation",
        "there is a right chest tube in place", "the aorta is tortuous and calcified",
        "the lungs are hyperexpanded", "no acute cardiopulmonary abnormality",
        "bibasilar atelectasis", "stable calcified granuloma in the right upper lobe"]


def synthetic(pool: list[str], studies: int, systems: int, seed: int
              ) -> tuple[list[str], dict[str, list[str]]]:
    """References and ``systems`` generated report lists of 1-6 sampled sentences each."""
    rng = np.random.default_rng(seed)

    def reports() -> list[str]:
        return [" . ".join(rng.choice(pool, size=rng.integers(1, 7))) + " ."
                for _ in range(studies)]

    return reports(), {f"system{k}": reports() for k in range(systems)}


def timed(references: list[str], generated: dict[str, list[str]], resamples: int,
          seed: int) -> dict:
    """Seconds for labels, statistics and the bootstrap of one corpus."""
    start = time.perf_counter()
    ref_values = label_values(references)
    values = {name: label_values(g) for name, g in generated.items()}
    labelled = time.perf_counter()
    stats = {name: study_statistics(g, references, values[name], ref_values)
             for name, g in generated.items()}
    computed = time.perf_counter()
    paired_bootstrap(stats, primary=next(iter(stats)), resamples=resamples, seed=seed)
    done = time.perf_counter()
    return {"studies": len(references), "systems": len(generated), "resamples": resamples,
            "vocabulary": len(next(iter(stats.values())).references.vocabulary),
            "label_s": round(labelled - start, 3), "statistics_s": round(computed - labelled, 3),
            "bootstrap_s": round(done - computed, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--sizes", default="250,500,1000,2000,3858")
    parser.add_argument("--resample-counts", default="100,500,1000,2000")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    pool = POOL
    if GENERATIONS.exists():
        import pandas as pd

        frame = pd.read_parquet(GENERATIONS)
        references = frame["reference"].tolist()
        generated = {name: frame[column].tolist() for name, column in REAL_SYSTEMS.items()
                     if column in frame.columns}
        pool = sorted({s.strip() for r in references for s in r.split(" . ") if s.strip()})
        source = str(GENERATIONS)
    else:
        references, generated = synthetic(pool, 591, 4, args.seed)
        source = "synthetic"
    main_run = timed(references, generated, args.resamples, args.seed)
    by_studies = [timed(*synthetic(pool, n, 4, args.seed), args.resamples, args.seed)
                  for n in (int(s) for s in args.sizes.split(","))]
    refs591, gen591 = synthetic(pool, 591, 4, args.seed)
    by_resamples = [timed(refs591, gen591, r, args.seed)
                    for r in (int(s) for s in args.resample_counts.split(","))]
    print(json.dumps({
        "source": source, "cores": len(os.sched_getaffinity(0)), "main": main_run,
        "by_studies": by_studies, "by_resamples": by_resamples,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }, indent=2))


if __name__ == "__main__":
    main()
