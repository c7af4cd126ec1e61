//! The bit-parallel search of the resource glob (see [`super`]): Shift-And
//! over the characters of the text, for a segment of the glob with `?` in it
//! or a short literal one.
//!
//! After each character of the text, bit j of the state says whether the
//! first j + 1 characters of the segment match the text that ends there; a
//! step shifts the state by one position and keeps the positions the new
//! character may stand at. A segment of k characters takes W = ceil(k / 64)
//! words, so a step costs W word operations and a search O(k + n × W) for n
//! characters of text, whatever the segment and the text hold.

use smallvec::SmallVec;

use super::{Steps, utf8_len};

/// The leftmost match of `core` (a segment, literal at both ends) in `hay`
/// at or after `from`; returns where it ends.
pub(super) fn find(core: &str, hay: &[u8], from: usize, steps: &mut impl Steps) -> Option<usize> {
    let len = core.chars().count();
    // Every character is at least a byte: a text too short is no match.
    if hay.len() - from < len {
        return None;
    }
    // The state is kept in blocks of B words, B a constant so that the
    // compiler keeps a small state in registers.
    match len.div_ceil(64) {
        1 => search::<1>(core, len, 1, hay, from, steps),
        2 => search::<2>(core, len, 1, hay, from, steps),
        3 => search::<3>(core, len, 1, hay, from, steps),
        4 => search::<4>(core, len, 1, hay, from, steps),
        5 => search::<5>(core, len, 1, hay, from, steps),
        6 => search::<6>(core, len, 1, hay, from, steps),
        7 => search::<7>(core, len, 1, hay, from, steps),
        8 => search::<8>(core, len, 1, hay, from, steps),
        words => search::<8>(core, len, words.div_ceil(8), hay, from, steps),
    }
}

/// Shift-And over the characters of `hay[from..]` for `core` (`len`
/// characters, at most `blocks` × B × 64).
///
/// The positions a character may stand at come from a table with one row
/// per class of character: row 0 for characters the segment does not name
/// (its `?` positions), one row per ASCII character it names, and for wider
/// characters one row per byte value at each place (first byte, continuation
/// bytes): a wider character's row is the intersection of its bytes' rows.
/// Two characters of the same length are equal when they agree at every
/// place, and characters of different lengths differ in their first byte,
/// so this needs no decoding and no table indexed by whole characters. At
/// most 1 + 126 ASCII rows (`*` and `?` are never literal) + 1 + 243 byte
/// rows (51 valid first bytes, 64 values for each of three continuation
/// bytes).
fn search<const B: usize>(
    core: &str,
    len: usize,
    blocks: usize,
    hay: &[u8],
    from: usize,
    steps: &mut impl Steps,
) -> Option<usize> {
    // Row r is rows[r * blocks..(r + 1) * blocks]; row 0 holds the `?` positions.
    let mut rows: SmallVec<[[u64; B]; 32]> = SmallVec::from_elem([0; B], blocks);
    let bit = |j: usize| (j / (64 * B), (j / 64) % B, 1u64 << (j % 64));
    for (j, c) in core.chars().enumerate() {
        if c == '?' {
            let (block, word, mask) = bit(j);
            rows[block][word] |= mask;
        }
    }
    let new_row = |rows: &mut SmallVec<[[u64; B]; 32]>| {
        let row = rows.len() / blocks;
        for k in 0..blocks {
            let copy = rows[k];
            rows.push(copy);
        }
        row
    };
    // ASCII rows first, so that their numbers fit in a byte.
    let mut ascii = [0u8; 128];
    for (j, c) in core.chars().enumerate() {
        if c != '?' && c.is_ascii() {
            let class = &mut ascii[c as usize];
            if *class == 0 {
                *class = new_row(&mut rows) as u8;
            }
            let (block, word, mask) = bit(j);
            rows[usize::from(*class) * blocks + block][word] |= mask;
        }
    }
    // Wider characters: rows numbered from a copy of row 0, which byte class
    // 0 (a byte value the segment does not hold at that place) stands for.
    let mut wide: Option<[u8; 256]> = None;
    let mut wide_base = 0;
    for (j, c) in core.chars().enumerate() {
        if c.is_ascii() {
            continue;
        }
        let classes = wide.get_or_insert_with(|| {
            wide_base = new_row(&mut rows);
            [0; 256]
        });
        let mut buf = [0; 4];
        for (place, &b) in c.encode_utf8(&mut buf).as_bytes().iter().enumerate() {
            let class = &mut classes[place * 64 + usize::from(b & 0x3f)];
            if *class == 0 {
                *class = (new_row(&mut rows) - wide_base) as u8;
            }
            let (block, word, mask) = bit(j);
            rows[(wide_base + usize::from(*class)) * blocks + block][word] |= mask;
        }
    }
    steps.add(core.len() + rows.len() * B);

    let classes = Classes { ascii: &ascii, wide: wide.as_ref(), wide_base, blocks };
    let (last_block, last_word, top) = bit(len - 1);
    if blocks == 1 {
        // One block of exactly the segment's words: its last word is B - 1.
        debug_assert_eq!(last_word, B - 1);
        scan_block(&rows, &classes, top, hay, from, steps)
    } else {
        scan_blocks(&rows, &classes, (last_block, last_word, top), hay, from, steps)
    }
}

/// How a text character finds its row (see [`search`]).
struct Classes<'a> {
    ascii: &'a [u8; 128],
    wide: Option<&'a [u8; 256]>,
    wide_base: usize,
    blocks: usize,
}

impl Classes<'_> {
    /// The row of the wider character at `hay[at..]` in a table of one
    /// block, and the character's length.
    #[inline(always)]
    fn wide_mask<const B: usize>(&self, rows: &[[u64; B]], hay: &[u8], at: usize) -> ([u64; B], usize) {
        let first = hay[at];
        let n = utf8_len(first);
        let Some(classes) = self.wide else { return (rows[0], n) };
        let row =
            |place: usize, b: u8| &rows[self.wide_base + usize::from(classes[place * 64 + usize::from(b & 0x3f)])];
        let and = |mask: &mut [u64; B], other: &[u64; B]| mask.iter_mut().zip(other).for_each(|(m, o)| *m &= o);
        let mut mask = *row(0, first);
        and(&mut mask, row(1, hay[at + 1]));
        if n > 2 {
            and(&mut mask, row(2, hay[at + 2]));
        }
        if n > 3 {
            and(&mut mask, row(3, hay[at + 3]));
        }
        (mask, n)
    }

    /// The first row of each byte of the wider character at `hay[at..]`,
    /// and its length.
    #[inline(always)]
    fn wide_rows(&self, hay: &[u8], at: usize) -> ([usize; 4], usize) {
        let n = utf8_len(hay[at]);
        let mut rows = [0; 4];
        if let Some(classes) = self.wide {
            for (place, row) in rows.iter_mut().enumerate().take(n) {
                let class = classes[place * 64 + usize::from(hay[at + place] & 0x3f)];
                *row = (self.wide_base + usize::from(class)) * self.blocks;
            }
        }
        (rows, n)
    }
}

/// One Shift-And step: every partial match grows by the new character, a
/// new one starts, and only those the character may continue survive.
#[inline(always)]
fn step<const B: usize>(state: &mut [u64; B], mask: &[u64; B], carry: u64) -> u64 {
    // From a copy, so that the words do not wait on one another.
    let old = *state;
    state[0] = ((old[0] << 1) | carry) & mask[0];
    for w in 1..B {
        state[w] = ((old[w] << 1) | (old[w - 1] >> 63)) & mask[w];
    }
    old[B - 1] >> 63
}

/// Eight bytes with the high bit clear: eight ASCII characters.
const ASCII_CHUNK: u64 = 0x8080_8080_8080_8080;

/// The scan of [`search`] for a state of one block, kept in registers.
#[inline(always)]
fn scan_block<const B: usize>(
    rows: &[[u64; B]],
    classes: &Classes<'_>,
    top: u64,
    hay: &[u8],
    mut at: usize,
    steps: &mut impl Steps,
) -> Option<usize> {
    let mut state = [0u64; B];
    let ascii = |b: u8| &rows[usize::from(classes.ascii[usize::from(b)])];
    loop {
        // Runs of ASCII eight characters at a time, with one test for a
        // match after each eight (a branch per character cost more than the
        // step), replayed one by one when there was one.
        let chunk = hay.get(at..).and_then(<[u8]>::first_chunk::<8>);
        if let Some(chunk) = chunk.filter(|c| u64::from_le_bytes(**c) & ASCII_CHUNK == 0) {
            let before = state;
            let mut seen = 0;
            for &b in chunk {
                step(&mut state, ascii(b), 1);
                seen |= state[B - 1];
            }
            steps.add(8 * B);
            if seen & top != 0 {
                state = before;
                for (k, &b) in chunk.iter().enumerate() {
                    step(&mut state, ascii(b), 1);
                    if state[B - 1] & top != 0 {
                        return Some(at + k + 1);
                    }
                }
            }
            at += 8;
            continue;
        }
        // Otherwise character by character through those eight bytes (a
        // wider character is among them, or the text ends).
        let stop = hay.len().min(at + 8);
        while at < stop {
            let b = hay[at];
            let mask = if b < 0x80 {
                at += 1;
                *ascii(b)
            } else {
                let (mask, n) = classes.wide_mask(rows, hay, at);
                at += n;
                mask
            };
            step(&mut state, &mask, 1);
            steps.add(B);
            if state[B - 1] & top != 0 {
                return Some(at);
            }
        }
        if at >= hay.len() {
            return None;
        }
    }
}

/// The scan of [`search`] for a state of several blocks.
fn scan_blocks<const B: usize>(
    rows: &[[u64; B]],
    classes: &Classes<'_>,
    (last_block, last_word, top): (usize, usize, u64),
    hay: &[u8],
    mut at: usize,
    steps: &mut impl Steps,
) -> Option<usize> {
    let blocks = classes.blocks;
    let mut state: SmallVec<[[u64; B]; 4]> = SmallVec::from_elem([0; B], blocks);
    let mut wide: SmallVec<[[u64; B]; 4]> = SmallVec::from_elem([0; B], blocks);
    let (state, wide) = (&mut state[..], &mut wide[..]);
    while let Some(&b) = hay.get(at) {
        let mask: &[[u64; B]] = if b < 0x80 {
            at += 1;
            let row = usize::from(classes.ascii[usize::from(b)]) * blocks;
            &rows[row..row + blocks]
        } else {
            let (r, n) = classes.wide_rows(hay, at);
            at += n;
            wide.copy_from_slice(&rows[r[0]..r[0] + blocks]);
            for r in &r[1..n] {
                for (m, x) in wide.iter_mut().zip(&rows[*r..*r + blocks]) {
                    for w in 0..B {
                        m[w] &= x[w];
                    }
                }
            }
            wide
        };
        let mut carry = 1;
        for (s, m) in state.iter_mut().zip(mask) {
            carry = step(s, m, carry);
        }
        steps.add(blocks * B);
        if state[last_block][last_word] & top != 0 {
            return Some(at);
        }
    }
    None
}
