"""The column encoders of block format version 2 (docs/format.md §3), defined
exactly so that the device port (device_port/src/sq_enc.c) writes the same
bytes: integer arithmetic only, every choice a rule.

Both write *short* sections (codec bit SHORT): the base as a zigzag LEB128
varint, the dictionary's size as a LEB128 varint.

* ``fast``: bit-packing only, no dictionary; predictor orders 0, 1, 2 priced
  exactly, the smallest section wins, ties to the smaller order.
* ``compact``: each mini-block is bit-packed at the bit length w of its
  largest residual unless a Rice parameter is strictly cheaper; the Rice
  cost Σ(u >> k) + c(k + 1) is convex in k, so walking k down from w - 1
  while the cost does not grow finds the least cost's smallest k.  Orders
  0–2 without a dictionary, then with one (channels only, never the time
  column), are priced exactly; the first smallest wins.
"""
from __future__ import annotations

import numpy as np

from ..jitcache import cached, digest
from .bits import (ONE, U64, ZERO, bit_length, finish_bits, put_bits, put_varint, put_zeros,
                   varint_size)
from .codes import DICT, MINI_BLOCK, RICE, SHORT, ZERO_RESIDUALS
from .intcodec import dictionary_gaps
from .predictor import residuals, zigzag

_STAMP = digest("codec/*.py")     # kernels filed under what they compile in (jitcache.py)


@cached(_STAMP, nogil=True)
def _rice_cost(u, lo, hi, k):
    total = 0
    for i in range(lo, hi):
        total += np.int64(u[i] >> U64(k))
    return total + (hi - lo) * (k + 1)


@cached(_STAMP, nogil=True)
def mini_block_choice(u, lo, hi, allow_rice):
    """(header byte, bits) of one mini-block, by the rule above."""
    big = ZERO
    for i in range(lo, hi):
        if u[i] > big:
            big = u[i]
    w = bit_length(big)
    pack = (hi - lo) * w
    if not allow_rice or w < 2:
        return w, pack
    k = w - 1
    cost = _rice_cost(u, lo, hi, k)
    while k > 0:
        lower = _rice_cost(u, lo, hi, k - 1)
        if lower > cost:
            break
        k -= 1
        cost = lower
    if cost < pack:
        return 0x80 | k, cost
    return w, pack


@cached(_STAMP, nogil=True)
def _choose(u, allow_rice, headers):
    n = u.shape[0]
    bits = 0
    for m in range((n + MINI_BLOCK - 1) // MINI_BLOCK):
        lo = m * MINI_BLOCK
        headers[m], b = mini_block_choice(u, lo, min(n, lo + MINI_BLOCK), allow_rice)
        bits += b
    return bits


@cached(_STAMP, nogil=True)
def _payload_size(s, order, allow_rice, u, headers):
    residuals(s, order, u)
    n = s.shape[0]
    return (n + MINI_BLOCK - 1) // MINI_BLOCK + (_choose(u, allow_rice, headers) + 7) // 8


@cached(_STAMP, nogil=True)
def _write_payload(s, order, allow_rice, u, headers, out, pos):
    n = s.shape[0]
    n_mini = (n + MINI_BLOCK - 1) // MINI_BLOCK
    residuals(s, order, u)
    _choose(u, allow_rice, headers)
    for m in range(n_mini):
        out[pos + m] = np.uint8(headers[m])
    byte_pos, acc, n_acc = pos + n_mini, ZERO, 0
    for m in range(n_mini):
        h = headers[m]
        for i in range(m * MINI_BLOCK, min(n, (m + 1) * MINI_BLOCK)):
            if h & RICE:
                k = h & 0x3F
                byte_pos, acc, n_acc = put_zeros(out, byte_pos, acc, n_acc, np.int64(u[i] >> U64(k)))
                byte_pos, acc, n_acc = put_bits(out, byte_pos, acc, n_acc, ONE, 1)
                byte_pos, acc, n_acc = put_bits(out, byte_pos, acc, n_acc, u[i], k)
            else:
                byte_pos, acc, n_acc = put_bits(out, byte_pos, acc, n_acc, u[i], h)
    return finish_bits(out, byte_pos, acc, n_acc)


@cached(_STAMP, nogil=True)
def _best_order(s, allow_rice, u, headers):
    best_order, best = 0, -1
    for order in range(3):
        size = _payload_size(s, order, allow_rice, u, headers)
        if best < 0 or size < best:
            best_order, best = order, size
    return best_order, best


@cached(_STAMP, nogil=True)
def _dictionary(y):
    """Sorted distinct values of y and the rank of each."""
    entries = np.unique(y)
    return entries, np.searchsorted(entries, y).astype(np.uint64)


@cached(_STAMP, nogil=True)
def encode_section(words, signed, allow_dict, allow_rice, out, pos):
    """Write the short section of ``words`` (uint64) at out[pos:]; returns
    (end, codec bits: order | DICT | ZERO_RESIDUALS | SHORT)."""
    n = words.shape[0]
    base = U64(words.view(np.int64).min()) if signed else words.min()
    y = words - base
    pos = put_varint(out, pos, zigzag(base))
    if y.max() == ZERO:
        return pos, ZERO_RESIDUALS | SHORT
    u = np.empty(n, np.uint64)
    headers = np.empty((n + MINI_BLOCK - 1) // MINI_BLOCK, np.int64)
    order, size = _best_order(y, allow_rice, u, headers)
    if allow_dict:
        entries, ranks = _dictionary(y)
        gaps = dictionary_gaps(entries)
        g_u = np.empty(gaps.shape[0], np.uint64)
        g_headers = np.empty((gaps.shape[0] + MINI_BLOCK - 1) // MINI_BLOCK, np.int64)
        dict_size = varint_size(U64(gaps.shape[0])) + _payload_size(gaps, 0, allow_rice, g_u, g_headers)
        dict_order, rank_size = _best_order(ranks, allow_rice, u, headers)
        if dict_size + rank_size < size:
            pos = put_varint(out, pos, U64(gaps.shape[0]))
            pos = _write_payload(gaps, 0, allow_rice, g_u, g_headers, out, pos)
            return _write_payload(ranks, dict_order, allow_rice, u, headers, out, pos), \
                dict_order | DICT | SHORT
    return _write_payload(y, order, allow_rice, u, headers, out, pos), order | SHORT


def max_short_section_bytes(n: int) -> int:
    """An upper bound of a short section's size."""
    return 10 + 5 + 2 * ((n + MINI_BLOCK - 1) // MINI_BLOCK) + 16 * n + 16
