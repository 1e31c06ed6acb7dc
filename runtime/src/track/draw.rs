//! Box overlays on frames: the live view, recorded frames and the demo's annotated clip.

use super::Rect;

/// Draw a 2-px rectangle outline `[x, y, w, h]` into `img`, clipped to the frame; a box with
/// a non-finite coordinate (a lost target) draws nothing.
pub fn draw_rect(img: &mut image::RgbImage, r: &Rect, colour: [u8; 3]) {
    if !r.iter().all(|v| v.is_finite()) {
        return;
    }
    let (w, h) = (img.width() as i64, img.height() as i64);
    let (x0, y0) = (r[0].round() as i64, r[1].round() as i64);
    let (x1, y1) = ((r[0] + r[2]).round() as i64, (r[1] + r[3]).round() as i64);
    let mut put = |x: i64, y: i64| {
        if x >= 0 && y >= 0 && x < w && y < h {
            img.put_pixel(x as u32, y as u32, image::Rgb(colour));
        }
    };
    for t in 0..2 {
        for x in x0..=x1 {
            put(x, y0 + t);
            put(x, y1 - t);
        }
        for y in y0..=y1 {
            put(x0 + t, y);
            put(x1 - t, y);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outline_is_drawn_and_clipped() {
        let mut img = image::RgbImage::new(10, 10);
        draw_rect(&mut img, &[2.0, 2.0, 4.0, 4.0], [255, 0, 0]);
        assert_eq!(img.get_pixel(2, 2).0, [255, 0, 0]);
        assert_eq!(img.get_pixel(6, 6).0, [255, 0, 0]);
        assert_eq!(img.get_pixel(4, 4).0, [0, 0, 0], "inside stays untouched");
        // Partly outside the frame: no panic, the visible part is drawn.
        draw_rect(&mut img, &[-5.0, 8.0, 20.0, 20.0], [0, 255, 0]);
        assert_eq!(img.get_pixel(0, 8).0, [0, 255, 0]);
        draw_rect(&mut img, &[f32::NAN, 0.0, 1.0, 1.0], [0, 0, 255]);
    }
}
