"""How distillation from a cached top-k teacher differs from online
distillation as k shrinks, on a tiny GPT-2 pair (CPU, about a minute).

    python tools/benchmark/llm_cached_teacher_k.py [--ks 8 32 128] \\
        [--vocab 2048] [--steps 60] [--tau 1.0] [--calibrate wrong]

A teacher is first fitted for ``--teacher-steps`` steps to 512 sequences of
a random sparse Markov chain over ``--vocab`` tokens, so that its next-token
distributions are peaked as a language model's are. Its top-k logits, label
logit and log-sum-exp are then cached for 32 other training sequences, and one
student (same initial weights each time) is trained for ``--steps`` steps
online (``loca_kd_loss`` on the full teacher) and from the cache at each k
(``sparse_loca_kd_loss``). Reported per k: the relative difference of the
first step's loss and the cosine of its gradient against online, the share
of teacher mass outside the top-k, and after training the held-out forward
KL from the online student to the k student, and the held-out LoCa-KD loss
of each student against the full teacher.
"""
from __future__ import annotations

import argparse

# loca_mm first: its compatibility fixes let torchvision, which transformers
# imports, load next to the CPU build of torch.
import loca_mm  # noqa: F401,I001
import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import GPT2Config, GPT2LMHeadModel

from loca_mm import functional as LF


def markov_chain(vocab: int, seed: int = 0) -> Tensor:
    """16 successors per token, drawn with Zipf-like weights 1/rank."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (vocab, 16), generator=generator)


def markov_sequences(successors: Tensor, count: int, length: int,
                     seed: int) -> Tensor:
    """``count`` sequences of the chain."""
    generator = torch.Generator().manual_seed(seed)
    weights = 1.0 / torch.arange(1, 17, dtype=torch.float)
    tokens = torch.empty(count, length, dtype=torch.long)
    tokens[:, 0] = torch.randint(0, len(successors), (count, ),
                                 generator=generator)
    for t in range(1, length):
        pick = torch.multinomial(weights.expand(count, -1), 1,
                                 generator=generator).squeeze(-1)
        tokens[:, t] = successors[tokens[:, t - 1], pick]
    return tokens


def gpt2(vocab: int, width: int, layers: int, seed: int) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    return GPT2LMHeadModel(
        GPT2Config(vocab_size=vocab, n_embd=width, n_layer=layers, n_head=2,
                   n_positions=128, resid_pdrop=0.0, embd_pdrop=0.0,
                   attn_pdrop=0.0, bos_token_id=0, eos_token_id=0))


def rows(model, tokens):
    """Next-token logits (N, V) and labels (N,) of all positions."""
    logits = model(input_ids=tokens).logits[:, :-1]
    return logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=' '.join(__doc__.split('\n\n')[0].split()))
    parser.add_argument('--ks', type=int, nargs='+', default=[8, 32, 128],
                        help='cached classes per token')
    parser.add_argument('--vocab', type=int, default=2048,
                        help='vocabulary size')
    parser.add_argument('--steps', type=int, default=60,
                        help='student training steps per run')
    parser.add_argument('--teacher-steps', type=int, default=150,
                        help='steps fitting the teacher to the chain')
    parser.add_argument('--tau', type=float, default=1.0,
                        help='distillation temperature')
    parser.add_argument('--alpha', type=float, default=0.9,
                        help="LoCa's alpha")
    parser.add_argument('--calibrate', default='wrong',
                        choices=LF.CALIBRATION_MODES, help='LoCa mode')
    parser.add_argument('--threads', type=int, default=2,
                        help='torch CPU threads')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loss_kwargs = dict(tau=args.tau, alpha=args.alpha,
                       calibrate=args.calibrate)
    chain = markov_chain(args.vocab)
    # The teacher learns the chain from sequences of its own, so that it
    # predicts the chain's spread on the students' sequences rather than
    # having memorised them.
    teacher_data = markov_sequences(chain, 512, 64, seed=1)
    train = markov_sequences(chain, 32, 64, seed=2)
    held_out = markov_sequences(chain, 16, 64, seed=3)

    teacher = gpt2(args.vocab, 128, 2, seed=1)
    optimizer = torch.optim.AdamW(teacher.parameters(), lr=3e-3)
    for step in range(args.teacher_steps):
        batch = teacher_data[step * 32 % 512:][:32]
        logits, labels = rows(teacher, batch)
        loss = F.cross_entropy(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    teacher.eval()
    with torch.no_grad():
        logits_T, labels = rows(teacher, train)
        held_T, held_labels = rows(teacher, held_out)
    print(f'teacher CE on the students\' sequences '
          f'{F.cross_entropy(logits_T, labels).item():.3f} (the chain\'s '
          'entropy is about 2.0)')

    def sparse_loss(k):
        top_logits, top_ids = logits_T.topk(k, -1)
        cached = (top_ids, top_logits,
                  logits_T.gather(-1, labels[:, None]).squeeze(-1),
                  (logits_T / args.tau).logsumexp(-1))
        return lambda S: LF.sparse_loca_kd_loss(S, *cached, labels,
                                                **loss_kwargs).loss

    def online(S):
        return LF.loca_kd_loss(S, logits_T, labels, **loss_kwargs).loss

    def train_student(loss_fn):
        student = gpt2(args.vocab, 64, 1, seed=0)
        optimizer = torch.optim.AdamW(student.parameters(), lr=3e-3)
        first = None
        for step in range(args.steps):
            logits_S, _ = rows(student, train)
            loss = loss_fn(logits_S)
            optimizer.zero_grad()
            loss.backward()
            if step == 0:
                first = (loss.item(), torch.cat(
                    [p.grad.flatten() for p in student.parameters()]))
            optimizer.step()
        student.eval()
        with torch.no_grad():
            held_S, _ = rows(student, held_out)
        return first, held_S

    (loss_on, grad_on), held_on = train_student(online)
    probs_T = torch.softmax(logits_T / args.tau, -1)

    def held_out_loss(held_S):
        return LF.loca_kd_loss(held_S, held_T, held_labels,
                               **loss_kwargs).loss.item()

    print('| k | teacher mass outside top-k | step-1 loss vs online | '
          'step-1 gradient cosine | held-out KL(online || k student) | '
          'held-out LoCa-KD loss (online: %.4f) |' % held_out_loss(held_on))
    print('|---|---|---|---|---|---|')
    for k in args.ks:
        outside = 1 - probs_T.topk(k, -1).values.sum(-1)
        (loss_k, grad_k), held_k = train_student(sparse_loss(k))
        cosine = F.cosine_similarity(grad_k, grad_on, 0).item()
        kl = F.kl_div(torch.log_softmax(held_k / args.tau, -1),
                      torch.log_softmax(held_on / args.tau, -1),
                      log_target=True, reduction='batchmean').item()
        print(f'| {k} | {outside.mean().item():.4f} | '
              f'{(loss_k - loss_on) / loss_on:+.4f} | {cosine:.5f} | '
              f'{kl:.5f} | {held_out_loss(held_k):.4f} |')


if __name__ == '__main__':
    main()
