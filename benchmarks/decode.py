"""Decoding speed: our batched, KV-cached, early-stopping decoder against the authors' scheme.

The authors' scheme (as in their public code): greedy, a fixed 127 steps with no early stop,
the whole prefix re-run through the model at every step, and the DiagnosisBot re-run at every
step. Both run side by side in one process on the same weights and the same test images.
Prints JSON. Uses the trained model folder when given (data/eval/model), else a freshly
initialised default-size model (speed does not depend on the weights, except through when
end-of-sequence appears; the trained model is the honest comparison).

    python benchmarks/decode.py [--model data/eval/model] [--studies 32] [--batch 16]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from ekagen.decoding import beam_decode, greedy_decode, greedy_decode_uncached


def authors_scheme(generator, classifier, images, knowledge, bos, eos, steps=127):
    """Fixed ``steps`` greedy steps, prefix recomputed and the classifier re-run each step."""
    tokens = torch.full((images.shape[0], 1), bos, dtype=torch.long)
    for _ in range(steps):
        classifier(images[:, :1])  # the diagnosis recomputed at every step
        context = generator.context(images, knowledge, tokens.shape[1])
        logits = generator.decode(context, tokens)[:, -1]
        tokens = torch.cat([tokens, logits.argmax(-1, keepdim=True)], dim=1)
    return tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="data/eval/model")
    parser.add_argument("--studies", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--prepared", default="data/prepared")
    args = parser.parse_args()
    torch.manual_seed(0)
    trained = Path(args.model).is_dir()
    if trained:
        from ekagen.inference import ReportWriter

        writer = ReportWriter.load(args.model)
        generator, classifier, vocab = writer.generator, writer.classifier, writer.vocab
        size = writer.image_size
    else:
        from ekagen.config import GeneratorConfig, load_params, replace, section
        from ekagen.data.vocab import Vocabulary
        from ekagen.models.classifier import build_classifier
        from ekagen.models.generator import build_generator

        vocab = Vocabulary.build(["a b c ."], 1, 128)
        cfg = replace(section(load_params(), "model", GeneratorConfig), backbone_weights="",
                      frozen_bn=False)
        generator = build_generator(cfg, 760, 2).eval()
        classifier = build_classifier("resnet18").eval()
        size = 128
    images_path = Path(args.prepared) / "images.npy"
    if images_path.is_file():
        cache = np.load(images_path, mmap_mode="r")
        pixels = np.asarray(cache[-args.studies :], dtype=np.float32) / 255.0
    else:
        pixels = np.random.default_rng(0).random((args.studies, generator.views, size, size),
                                                 dtype=np.float32)
    images = torch.from_numpy(pixels[:, : generator.views])
    knowledge = torch.randint(4, len(vocab), (len(images), generator.cfg.max_length))
    bos, eos = vocab.bos_id, vocab.eos_id
    results = {"trained_model": trained, "studies": len(images), "batch": args.batch,
               "threads": torch.get_num_threads()}

    def timed(fn):
        start = time.perf_counter()
        lengths = []
        with torch.no_grad():
            for s in range(0, len(images), args.batch):
                out = fn(images[s : s + args.batch], knowledge[s : s + args.batch])
                lengths.extend(len(x) for x in out)
        seconds = time.perf_counter() - start
        return {"seconds": round(seconds, 3),
                "reports_per_second": round(len(images) / seconds, 3),
                "mean_tokens": round(float(np.mean(lengths)), 1)}

    results["ours_greedy_cached"] = timed(
        lambda im, kn: greedy_decode(generator, im, kn, bos, eos, 127))
    results["ours_beam3_cached"] = timed(
        lambda im, kn: beam_decode(generator, im, kn, bos, eos, 3, 127))
    results["greedy_uncached_early_stop"] = timed(
        lambda im, kn: greedy_decode_uncached(generator, im, kn, bos, eos, 127))
    results["authors_scheme"] = timed(
        lambda im, kn: authors_scheme(generator, classifier, im, kn, bos, eos)[:, 1:].tolist())
    results["speedup_greedy_vs_authors"] = round(
        results["authors_scheme"]["seconds"] / results["ours_greedy_cached"]["seconds"], 2)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
