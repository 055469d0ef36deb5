"""Where each column of each block lies, as flat int64 arrays for the kernels.

Built with numpy from the block index and the block headers, one
:class:`Layout` per buffer (a segment file, or an in-memory tail), without a
Python loop over blocks.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..codec.block import ENTRY_SIZE, HEADER_SIZE

# lay_t columns
T_FIRST, TICK, TIME_CODEC, TIME_START, TIME_LEN, N_SAMPLES = range(6)


@dataclass
class Layout:
    buf: np.ndarray          # uint8: the buffer holding these blocks
    blocks: np.ndarray       # positions of these blocks in the BlockIndex
    lay_t: np.ndarray        # (n, 6) int64, columns above
    lay_c: np.ndarray        # (n, slots, 5) int64: start, len, codec, dexp, dtype


def _u_le(buf: np.ndarray, at: np.ndarray, size: int) -> np.ndarray:
    """Little-endian unsigned fields of ``size`` bytes at offsets ``at``."""
    value = np.zeros(len(at), np.uint64)
    for i in range(size):
        value |= buf[at + i].astype(np.uint64) << np.uint64(8 * i)
    return value


def build_layouts(index, slot_channels: np.ndarray) -> list[Layout]:
    """One Layout per buffer for the blocks of ``index``, with column slots for
    the stream channel indices ``slot_channels``."""
    layouts = []
    for buffer_no in np.unique(index.buffer_of):
        chosen = np.flatnonzero(index.buffer_of == buffer_no)
        buf = index.buffers[buffer_no]
        offsets = index.offset[chosen].astype(np.int64)
        entries = index.entries[chosen]
        n_channels = entries.shape[1]
        time_len = _u_le(buf, offsets + 44, 4).astype(np.int64)
        lay_t = np.empty((len(chosen), 6), np.int64)
        lay_t[:, T_FIRST] = index.t_first[chosen]
        lay_t[:, TICK] = _u_le(buf, offsets + 32, 8).astype(np.int64)
        lay_t[:, TIME_CODEC] = buf[offsets + 5]
        lay_t[:, TIME_START] = offsets + HEADER_SIZE + ENTRY_SIZE * n_channels
        lay_t[:, TIME_LEN] = time_len
        lay_t[:, N_SAMPLES] = index.n_samples[chosen]
        data_len = entries["data_len"].astype(np.int64)
        channel_start = (lay_t[:, TIME_START] + time_len)[:, None] + \
            np.concatenate([np.zeros((len(chosen), 1), np.int64), np.cumsum(data_len, 1)[:, :-1]], 1)
        lay_c = np.empty((len(chosen), len(slot_channels), 5), np.int64)
        for s, c in enumerate(slot_channels):
            lay_c[:, s, 0] = channel_start[:, c]
            lay_c[:, s, 1] = data_len[:, c]
            lay_c[:, s, 2] = entries[:, c]["codec"]
            lay_c[:, s, 3] = entries[:, c]["dexp"]
            lay_c[:, s, 4] = entries[:, c]["dtype"]
        layouts.append(Layout(buf, chosen, lay_t, lay_c))
    return layouts
