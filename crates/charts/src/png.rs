//! An RGB image in memory and its PNG encoding (8-bit RGB, deflated with `flate2`), plus a decoder of exactly
//! that encoding for tests.

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

impl Canvas {
    /// A white canvas.
    pub fn new(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            pixels: vec![255; width * height * 3],
        }
    }

    /// An image from row-major RGB bytes; `None` when their length is not `width · height · 3`.
    pub fn from_rgb(width: usize, height: usize, pixels: Vec<u8>) -> Option<Self> {
        (pixels.len() == width * height * 3).then_some(Self {
            width,
            height,
            pixels,
        })
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

/// Decoding, for tests (here and in the crates that draw charts).
pub mod decode {
    use super::*;
    use std::io::Read;

    /// Splits a PNG into its chunks, checking the signature and every CRC.
    pub fn chunks(png: &[u8]) -> Vec<(String, Vec<u8>)> {
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

    /// Decodes the pixels of a PNG written by [`Canvas::to_png`] (panics on anything else: for tests).
    pub fn decode(png: &[u8]) -> Canvas {
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

    #[cfg(test)]
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
}
