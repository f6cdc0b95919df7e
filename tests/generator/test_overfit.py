"""The generator can memorise a handful of studies: loss falls and greedy decoding reproduces
each report (a model that cannot do this cannot learn anything larger)."""

import torch

from ekagen.data.vocab import Vocabulary
from ekagen.decoding import greedy_decode
from ekagen.generation.data import encode_reports
from ekagen.models.generator import build_generator
from ekagen.training.losses import gid_loss
from tests.conftest import model_config

REPORTS = ["the heart is enlarged .", "no pleural effusion .", "the lungs are clear .",
           "there is a right pleural effusion ."]


def test_generator_overfits_four_studies():
    torch.manual_seed(0)
    vocab = Vocabulary.build(REPORTS, 1, 12)
    tokens = torch.from_numpy(encode_reports(REPORTS, vocab, 12))
    # each study its own image: stripes of a different frequency
    ramp = torch.arange(64, dtype=torch.float32)
    images = torch.stack([(torch.sin(ramp * (i + 1) * 0.2)[None, :] * 0.5 + 0.5).expand(64, 64)
                          for i in range(4)])[:, None]
    cfg = model_config(d_model=64, encoder_layers=1, decoder_layers=2, heads=4, ffn=128,
                          dropout=0.0, max_length=12, knowledge=False)
    model = build_generator(cfg, len(vocab), views=1)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    first = None
    for _ in range(150):
        logits = model(images, tokens[:, :-1])
        loss, _ = gid_loss(logits, tokens[:, 1:], vocab.pad_id)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else float(loss.detach())
    assert float(loss.detach()) < 0.05 < first
    model.eval()
    decoded = greedy_decode(model, images, None, vocab.bos_id, vocab.eos_id, max_length=11)
    assert [vocab.decode(seq) for seq in decoded] == [r for r in REPORTS]
