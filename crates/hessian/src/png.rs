//! A small RGB canvas that writes PNG files, for the sensitivity bar chart: filled rectangles, lines and text in
//! a built-in 3×5 pixel font. The pixels are deflated with `flate2` (already in the build through `zip`), so no
//! plotting or font stack is compiled for one chart.

use std::io::Write;

/// An RGB colour.
pub type Rgb = [u8; 3];

/// An RGB image in memory, white when created.
#[derive(Clone, Debug)]
pub struct Canvas {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

/// Glyphs of the built-in font: five rows of three columns, `#` for ink. Upper case draws as lower case; a
/// character outside the table draws as `?`.
const GLYPHS: &[(char, [&str; 5])] = &[
    ('0', ["###", "#.#", "#.#", "#.#", "###"]),
    ('1', [".#.", "##.", ".#.", ".#.", "###"]),
    ('2', ["###", "..#", "###", "#..", "###"]),
    ('3', ["###", "..#", ".##", "..#", "###"]),
    ('4', ["#.#", "#.#", "###", "..#", "..#"]),
    ('5', ["###", "#..", "###", "..#", "###"]),
    ('6', ["###", "#..", "###", "#.#", "###"]),
    ('7', ["###", "..#", "..#", ".#.", ".#."]),
    ('8', ["###", "#.#", "###", "#.#", "###"]),
    ('9', ["###", "#.#", "###", "..#", "###"]),
    ('a', [".#.", "#.#", "###", "#.#", "#.#"]),
    ('b', ["##.", "#.#", "##.", "#.#", "##."]),
    ('c', [".##", "#..", "#..", "#..", ".##"]),
    ('d', ["##.", "#.#", "#.#", "#.#", "##."]),
    ('e', ["###", "#..", "##.", "#..", "###"]),
    ('f', ["###", "#..", "##.", "#..", "#.."]),
    ('g', [".##", "#..", "#.#", "#.#", ".##"]),
    ('h', ["#.#", "#.#", "###", "#.#", "#.#"]),
    ('i', ["###", ".#.", ".#.", ".#.", "###"]),
    ('j', ["..#", "..#", "..#", "#.#", ".#."]),
    ('k', ["#.#", "#.#", "##.", "#.#", "#.#"]),
    ('l', ["#..", "#..", "#..", "#..", "###"]),
    ('m', ["#.#", "###", "###", "#.#", "#.#"]),
    ('n', ["##.", "#.#", "#.#", "#.#", "#.#"]),
    ('o', [".#.", "#.#", "#.#", "#.#", ".#."]),
    ('p', ["##.", "#.#", "##.", "#..", "#.."]),
    ('q', [".#.", "#.#", "#.#", "##.", ".##"]),
    ('r', ["##.", "#.#", "##.", "#.#", "#.#"]),
    ('s', [".##", "#..", ".#.", "..#", "##."]),
    ('t', ["###", ".#.", ".#.", ".#.", ".#."]),
    ('u', ["#.#", "#.#", "#.#", "#.#", "###"]),
    ('v', ["#.#", "#.#", "#.#", "#.#", ".#."]),
    ('w', ["#.#", "#.#", "###", "###", "#.#"]),
    ('x', ["#.#", "#.#", ".#.", "#.#", "#.#"]),
    ('y', ["#.#", "#.#", ".#.", ".#.", ".#."]),
    ('z', ["###", "..#", ".#.", "#..", "###"]),
    ('.', ["...", "...", "...", "...", ".#."]),
    (',', ["...", "...", "...", ".#.", "#.."]),
    ('-', ["...", "...", "###", "...", "..."]),
    ('+', ["...", ".#.", "###", ".#.", "..."]),
    ('=', ["...", "###", "...", "###", "..."]),
    ('_', ["...", "...", "...", "...", "###"]),
    (':', ["...", ".#.", "...", ".#.", "..."]),
    ('(', ["..#", ".#.", ".#.", ".#.", "..#"]),
    (')', ["#..", ".#.", ".#.", ".#.", "#.."]),
    ('/', ["..#", "..#", ".#.", "#..", "#.."]),
    ('±', [".#.", "###", ".#.", "...", "###"]),
    ('?', ["###", "..#", ".##", "...", ".#."]),
    (' ', ["...", "...", "...", "...", "..."]),
];

impl Canvas {
    /// A white canvas.
    pub fn new(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            pixels: vec![255; width * height * 3],
        }
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// The colour at `(x, y)`, or `None` outside the canvas.
    pub fn pixel(&self, x: usize, y: usize) -> Option<Rgb> {
        (x < self.width && y < self.height).then(|| {
            let i = (y * self.width + x) * 3;
            [self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]]
        })
    }

    /// Fills the rectangle with corners `(x0, y0)` and `(x1, y1)` (either order, inclusive), clipped.
    pub fn fill_rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, colour: Rgb) {
        let clip = |v: i64, max: usize| v.clamp(0, max as i64 - 1) as usize;
        if self.width == 0 || self.height == 0 {
            return;
        }
        let (xa, xb) = (x0.min(x1), x0.max(x1));
        let (ya, yb) = (y0.min(y1), y0.max(y1));
        if xb < 0 || yb < 0 || xa >= self.width as i64 || ya >= self.height as i64 {
            return;
        }
        for y in clip(ya, self.height)..=clip(yb, self.height) {
            for x in clip(xa, self.width)..=clip(xb, self.width) {
                let i = (y * self.width + x) * 3;
                self.pixels[i..i + 3].copy_from_slice(&colour);
            }
        }
    }

    /// Width in pixels of `text` drawn at `scale`.
    pub fn text_width(text: &str, scale: usize) -> usize {
        text.chars().count() * 4 * scale
    }

    /// Draws `text` with its top-left corner at `(x, y)`, each font pixel a `scale`×`scale` square.
    pub fn text(&mut self, x: i64, y: i64, text: &str, scale: usize, colour: Rgb) {
        let s = scale as i64;
        for (n, ch) in text.chars().enumerate() {
            let lower = ch.to_ascii_lowercase();
            let rows = GLYPHS
                .iter()
                .find(|(c, _)| *c == lower)
                .or_else(|| GLYPHS.iter().find(|(c, _)| *c == '?'))
                .map(|(_, rows)| rows)
                .expect("the font has '?'");
            let left = x + n as i64 * 4 * s;
            for (r, row) in rows.iter().enumerate() {
                for (c, ink) in row.chars().enumerate() {
                    if ink == '#' {
                        let (px, py) = (left + c as i64 * s, y + r as i64 * s);
                        self.fill_rect(px, py, px + s - 1, py + s - 1, colour);
                    }
                }
            }
        }
    }

    /// The image as PNG bytes (8-bit RGB, no interlace).
    pub fn to_png(&self) -> Vec<u8> {
        let mut raw = Vec::with_capacity(self.height * (1 + self.width * 3));
        for row in self.pixels.chunks(self.width * 3) {
            raw.push(0); // filter: none
            raw.extend_from_slice(row);
        }
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&raw).expect("writing to memory");
        let idat = z.finish().expect("writing to memory");

        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::with_capacity(13);
        ihdr.extend_from_slice(&(self.width as u32).to_be_bytes());
        ihdr.extend_from_slice(&(self.height as u32).to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // depth 8, RGB, deflate, filter 0, no interlace
        chunk(&mut png, b"IHDR", &ihdr);
        chunk(&mut png, b"IDAT", &idat);
        chunk(&mut png, b"IEND", &[]);
        png
    }
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc.finalize().to_be_bytes());
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Read;

    /// Splits a PNG into its chunks, checking the signature and every CRC.
    pub(crate) fn chunks(png: &[u8]) -> Vec<(String, Vec<u8>)> {
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let mut at = 8;
        let mut out = vec![];
        while at < png.len() {
            let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
            let kind = &png[at + 4..at + 8];
            let data = &png[at + 8..at + 8 + len];
            let crc = u32::from_be_bytes(png[at + 8 + len..at + 12 + len].try_into().unwrap());
            let mut h = crc32fast::Hasher::new();
            h.update(kind);
            h.update(data);
            assert_eq!(
                h.finalize(),
                crc,
                "CRC of {}",
                String::from_utf8_lossy(kind)
            );
            out.push((String::from_utf8_lossy(kind).into_owned(), data.to_vec()));
            at += 12 + len;
        }
        out
    }

    /// Decodes the pixels of a PNG written by [`Canvas::to_png`].
    pub(crate) fn decode(png: &[u8]) -> Canvas {
        let chunks = chunks(png);
        assert_eq!(chunks[0].0, "IHDR");
        let w = u32::from_be_bytes(chunks[0].1[0..4].try_into().unwrap()) as usize;
        let h = u32::from_be_bytes(chunks[0].1[4..8].try_into().unwrap()) as usize;
        assert_eq!(&chunks[0].1[8..], &[8, 2, 0, 0, 0]);
        assert_eq!(chunks.last().unwrap().0, "IEND");
        let mut raw = vec![];
        flate2::read::ZlibDecoder::new(&chunks[1].1[..])
            .read_to_end(&mut raw)
            .unwrap();
        assert_eq!(raw.len(), h * (1 + 3 * w));
        let mut c = Canvas::new(w, h);
        for y in 0..h {
            let row = &raw[y * (1 + 3 * w)..(y + 1) * (1 + 3 * w)];
            assert_eq!(row[0], 0);
            c.pixels[y * w * 3..(y + 1) * w * 3].copy_from_slice(&row[1..]);
        }
        c
    }

    #[test]
    fn png_round_trips_pixels() {
        let mut c = Canvas::new(7, 5);
        c.fill_rect(1, 1, 2, 3, [10, 20, 30]);
        c.fill_rect(-5, 4, 100, 10, [1, 2, 3]); // clipped to the last row
        let d = decode(&c.to_png());
        assert_eq!(d.pixel(1, 1), Some([10, 20, 30]));
        assert_eq!(d.pixel(2, 3), Some([10, 20, 30]));
        assert_eq!(d.pixel(3, 1), Some([255, 255, 255]));
        assert_eq!(d.pixel(6, 4), Some([1, 2, 3]));
        assert_eq!(d.pixel(7, 0), None);
    }

    #[test]
    fn text_draws_the_glyph() {
        let mut c = Canvas::new(8, 5);
        c.text(0, 0, "1", 1, [0, 0, 0]);
        let ink: Vec<String> = (0..5)
            .map(|y| {
                (0..3)
                    .map(|x| {
                        if c.pixel(x, y) == Some([0, 0, 0]) {
                            '#'
                        } else {
                            '.'
                        }
                    })
                    .collect()
            })
            .collect();
        assert_eq!(ink, [".#.", "##.", ".#.", ".#.", "###"]);
        assert_eq!(Canvas::text_width("ab", 2), 16);
        // Every glyph is 5 rows of 3.
        for (ch, rows) in GLYPHS {
            assert!(rows.iter().all(|r| r.chars().count() == 3), "{ch}");
        }
    }
}
