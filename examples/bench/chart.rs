//! A grouped bar chart written as a PNG with our own rasterisation (a 5×7 bitmap font, no font files),
//! so the benchmark runs on a machine without fonts or a fontconfig.

use std::path::Path;

/// One group of bars (an RTT and mode), with one value per series (strategy).
pub struct Group {
    /// The label under the group.
    pub label: String,
    /// One value per series, `None` when not measured.
    pub values: Vec<Option<f64>>,
}

const W: usize = 1200;
const H: usize = 620;
const LEFT: usize = 90;
const RIGHT: usize = 20;
const TOP: usize = 80;
const BOTTOM: usize = 110;

const PALETTE: [[u8; 3]; 6] = [
    [80, 80, 80],
    [214, 96, 77],
    [244, 165, 40],
    [66, 133, 244],
    [52, 168, 83],
    [150, 90, 200],
];

struct Canvas {
    px: Vec<u8>,
}

impl Canvas {
    fn new() -> Self {
        Self {
            px: vec![255; W * H * 3],
        }
    }

    fn set(&mut self, x: usize, y: usize, c: [u8; 3]) {
        if x < W && y < H {
            let i = (y * W + x) * 3;
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }

    fn rect(&mut self, x0: usize, y0: usize, x1: usize, y1: usize, c: [u8; 3]) {
        for y in y0..y1.min(H) {
            for x in x0..x1.min(W) {
                self.set(x, y, c);
            }
        }
    }

    /// Text at (x, y), top-left, each font pixel drawn as `scale`×`scale`.
    fn text(&mut self, x: usize, y: usize, s: &str, scale: usize, c: [u8; 3]) {
        let mut cx = x;
        for ch in s.chars() {
            let rows = glyph(ch.to_ascii_uppercase());
            for (r, bits) in rows.iter().enumerate() {
                for col in 0..5 {
                    if bits & (0x10 >> col) != 0 {
                        self.rect(
                            cx + col * scale,
                            y + r * scale,
                            cx + (col + 1) * scale,
                            y + (r + 1) * scale,
                            c,
                        );
                    }
                }
            }
            cx += 6 * scale;
        }
    }

    fn text_width(s: &str, scale: usize) -> usize {
        s.chars().count() * 6 * scale
    }
}

/// Writes the chart: one group per `groups` entry, one bar per series, values on a linear axis.
pub fn write(
    path: &Path,
    title: &str,
    series: &[&str],
    groups: &[Group],
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut c = Canvas::new();
    let black = [0, 0, 0];
    let grey = [220, 220, 220];
    c.text(LEFT, 16, title, 2, black);
    let max = groups
        .iter()
        .flat_map(|g| g.values.iter().flatten())
        .fold(0.0f64, |a, &b| a.max(b))
        .max(1.0);
    let top = nice_ceiling(max);
    let plot_h = H - TOP - BOTTOM;
    let plot_w = W - LEFT - RIGHT;
    for i in 0..=5 {
        let v = top * i as f64 / 5.0;
        let y = TOP + plot_h - (plot_h as f64 * i as f64 / 5.0) as usize;
        c.rect(LEFT, y, LEFT + plot_w, y + 1, grey);
        let label = format!("{v:.0}");
        let w = Canvas::text_width(&label, 2);
        c.text(
            LEFT.saturating_sub(w + 6),
            y.saturating_sub(7),
            &label,
            2,
            black,
        );
    }
    c.rect(LEFT, TOP, LEFT + 1, TOP + plot_h + 1, black);
    c.rect(LEFT, TOP + plot_h, LEFT + plot_w, TOP + plot_h + 1, black);
    let n = groups.len().max(1);
    let group_w = plot_w / n;
    let bar_w = (group_w * 8 / 10) / series.len().max(1);
    for (gi, g) in groups.iter().enumerate() {
        let gx = LEFT + gi * group_w + group_w / 10;
        for (si, v) in g.values.iter().enumerate() {
            let Some(v) = v else { continue };
            let h = (plot_h as f64 * (v / top)).round() as usize;
            let x = gx + si * bar_w;
            let color = PALETTE[si % PALETTE.len()];
            c.rect(x + 1, TOP + plot_h - h, x + bar_w - 1, TOP + plot_h, color);
        }
        let w = Canvas::text_width(&g.label, 2);
        let lx = (LEFT + gi * group_w + group_w / 2).saturating_sub(w / 2);
        c.text(lx, TOP + plot_h + 10, &g.label, 2, black);
    }
    // Legend.
    let mut lx = LEFT;
    let ly = H - 40;
    for (si, s) in series.iter().enumerate() {
        c.rect(lx, ly, lx + 18, ly + 14, PALETTE[si % PALETTE.len()]);
        c.text(lx + 24, ly, s, 2, black);
        lx += 24 + Canvas::text_width(s, 2) + 30;
    }
    c.text(4, TOP - 22, "OBJECTS/S", 2, black);
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut encoder = png::Encoder::new(file, W as u32, H as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&c.px)?;
    writer.finish()?;
    Ok(())
}

/// 1, 2 or 5 times a power of ten, at least `v`.
fn nice_ceiling(v: f64) -> f64 {
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * p >= v {
            return m * p;
        }
    }
    10.0 * p
}

/// The 5×7 glyph of `c` (rows top to bottom, bit 4 is the leftmost column); unknown characters are
/// blank.
fn glyph(c: char) -> [u8; 7] {
    match c {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        '-' => [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C],
        ',' => [0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08],
        '/' => [0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00],
        ':' => [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        '=' => [0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00],
        '+' => [0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00],
        _ => [0; 7],
    }
}
