//! Live frames from a V4L2 camera (`/dev/videoN`: USB webcams, the Pi camera through its
//! V4L2 driver), through the pure-Rust `linuxvideo` crate (no libv4l, no bindgen, so it
//! cross-builds like the rest of the runtime).
//!
//! Format negotiation: MJPEG is preferred (a USB 2 webcam delivers 640×480 and larger at full
//! frame rate only compressed), then YUYV (4:2:2, converted here with the BT.601 limited-range
//! matrix, which is what UVC cameras send). The driver picks the nearest size it supports to
//! the one asked for; the negotiated size is what `describe` reports.

use super::source::{Frame, FrameSource};
use crate::error::{Result, RuntimeError};
use std::path::{Path, PathBuf};

/// The pixel formats this source decodes, in order of preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CameraFormat {
    Mjpeg,
    Yuyv,
}

impl CameraFormat {
    /// The first format we decode among a camera's four-character codes.
    pub fn choose(fourccs: &[[u8; 4]]) -> Option<CameraFormat> {
        let has = |c: &[u8; 4]| fourccs.iter().any(|f| f == c);
        if has(b"MJPG") || has(b"JPEG") {
            Some(CameraFormat::Mjpeg)
        } else if has(b"YUYV") {
            Some(CameraFormat::Yuyv)
        } else {
            None
        }
    }
}

fn clamp_u8(v: f32) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

/// YUYV 4:2:2 (`Y0 U Y1 V` per two pixels, rows `stride` bytes apart) to RGB with the BT.601
/// limited-range matrix.
pub fn yuyv_to_rgb(data: &[u8], width: u32, height: u32, stride: u32) -> Result<image::RgbImage> {
    let (w, h, stride) = (width as usize, height as usize, stride as usize);
    if w % 2 != 0 || stride < 2 * w || data.len() < stride * h.saturating_sub(1) + 2 * w {
        return Err(RuntimeError::Other(format!(
            "camera: a YUYV frame of {width}×{height} (stride {stride}) needs {} bytes, got {}",
            stride * h.saturating_sub(1) + 2 * w,
            data.len()
        )));
    }
    let mut img = image::RgbImage::new(width, height);
    for y in 0..h {
        let row = &data[y * stride..y * stride + 2 * w];
        for (pair, px) in row.chunks_exact(4).enumerate() {
            let (u, v) = (px[1] as f32 - 128.0, px[3] as f32 - 128.0);
            for (k, &yy) in [px[0], px[2]].iter().enumerate() {
                let c = 1.164 * (yy as f32 - 16.0);
                let rgb = [
                    clamp_u8(c + 1.596 * v),
                    clamp_u8(c - 0.392 * u - 0.813 * v),
                    clamp_u8(c + 2.017 * u),
                ];
                img.put_pixel((2 * pair + k) as u32, y as u32, image::Rgb(rgb));
            }
        }
    }
    Ok(img)
}

/// An open, streaming V4L2 capture device.
pub struct Camera {
    path: PathBuf,
    stream: linuxvideo::stream::ReadStream,
    format: CameraFormat,
    width: u32,
    height: u32,
    stride: u32,
    index: u64,
}

fn cam_err(path: &Path, what: &str, e: std::io::Error) -> RuntimeError {
    let hint = match e.kind() {
        std::io::ErrorKind::NotFound => {
            " (no such device: is the camera plugged in? `ls /dev/video*`)"
        }
        std::io::ErrorKind::PermissionDenied => {
            " (permission denied: add the user to the 'video' group)"
        }
        std::io::ErrorKind::ResourceBusy => {
            " (the camera is busy: another program is capturing from it; `fuser -v /dev/video*` names it)"
        }
        _ => "",
    };
    RuntimeError::Other(format!("camera {}: {what}: {e}{hint}", path.display()))
}

/// Errors after which the device is gone rather than one frame bad: unplugged (ENODEV,
/// ENXIO, ENOENT), or the driver failing the transfer (EIO, as uvcvideo does on a pulled cable).
pub fn device_gone(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENODEV) | Some(libc::ENXIO) | Some(libc::ENOENT) | Some(libc::EIO)
    )
}

impl Camera {
    /// Open `path`, negotiate MJPEG or YUYV near `width`×`height`, and start streaming.
    pub fn open(path: &Path, width: u32, height: u32) -> Result<Camera> {
        use linuxvideo::format::{PixFormat, PixelFormat};
        use linuxvideo::{BufType, Device};
        let dev = Device::open(path).map_err(|e| cam_err(path, "open", e))?;
        let fourccs: Vec<[u8; 4]> = dev
            .formats(BufType::VIDEO_CAPTURE)
            .map(|f| f.map(|f| f.pixel_format().as_fourcc()))
            .collect::<std::io::Result<_>>()
            .map_err(|e| cam_err(path, "listing capture formats (is it a capture device?)", e))?;
        let format = CameraFormat::choose(&fourccs).ok_or_else(|| {
            let names: Vec<String> = fourccs
                .iter()
                .map(|f| String::from_utf8_lossy(f).into_owned())
                .collect();
            RuntimeError::Other(format!(
                "camera {}: offers {names:?}; edgeslim-rt decodes MJPG and YUYV",
                path.display()
            ))
        })?;
        let pixel = match format {
            CameraFormat::Mjpeg if fourccs.contains(b"MJPG") => PixelFormat::MJPG,
            CameraFormat::Mjpeg => PixelFormat::JPEG,
            CameraFormat::Yuyv => PixelFormat::YUYV,
        };
        let capture = dev
            .video_capture(PixFormat::new(width, height, pixel))
            .map_err(|e| cam_err(path, "setting the capture format", e))?;
        let got = capture.format();
        let (w, h, stride) = (got.width(), got.height(), got.bytes_per_line());
        let stream = capture
            .into_stream()
            .map_err(|e| cam_err(path, "starting the stream", e))?;
        Ok(Camera {
            path: path.to_path_buf(),
            stream,
            format,
            width: w,
            height: h,
            stride: stride.max(2 * w),
            index: 0,
        })
    }

    fn decode(&self, data: &[u8]) -> Result<image::RgbImage> {
        match self.format {
            CameraFormat::Yuyv => yuyv_to_rgb(data, self.width, self.height, self.stride),
            CameraFormat::Mjpeg => {
                image::load_from_memory_with_format(data, image::ImageFormat::Jpeg)
                    .map(|i| i.to_rgb8())
                    .map_err(|e| {
                        RuntimeError::Other(format!(
                            "camera {}: frame {}: JPEG: {e}",
                            self.path.display(),
                            self.index
                        ))
                    })
            }
        }
    }
}

impl FrameSource for Camera {
    fn next_frame(&mut self) -> Option<Result<Frame>> {
        let data = match self.stream.dequeue(|buf| Ok(buf.to_vec())) {
            Ok(d) => d,
            Err(e) if device_gone(&e) => {
                return Some(Err(RuntimeError::SourceLost(
                    cam_err(&self.path, "reading a frame", e).to_string(),
                )))
            }
            Err(e) => return Some(Err(cam_err(&self.path, "reading a frame", e))),
        };
        let index = self.index;
        self.index += 1;
        Some(self.decode(&data).map(|image| Frame {
            image,
            label: format!("camera frame {index}"),
            index,
        }))
    }

    fn describe(&self) -> String {
        format!(
            "camera {} ({}×{} {:?})",
            self.path.display(),
            self.width,
            self.height,
            self.format
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_choice_prefers_mjpeg_then_yuyv() {
        assert_eq!(
            CameraFormat::choose(&[*b"YUYV", *b"MJPG"]),
            Some(CameraFormat::Mjpeg)
        );
        assert_eq!(CameraFormat::choose(&[*b"YUYV"]), Some(CameraFormat::Yuyv));
        assert_eq!(CameraFormat::choose(&[*b"NV12", *b"H264"]), None);
    }

    #[test]
    fn yuyv_converts_known_colours() {
        // Two pixels per group: black/white (Y 16 / 235, no chroma), then pure red's YUV.
        let data = [16, 128, 235, 128, 81, 90, 81, 240];
        let img = yuyv_to_rgb(&data, 4, 1, 8).unwrap();
        assert_eq!(img.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(img.get_pixel(1, 0).0, [255, 255, 255]);
        let red = img.get_pixel(2, 0).0;
        assert!(red[0] >= 250 && red[1] <= 5 && red[2] <= 5, "{red:?}");
        // Row padding (stride > 2·width) is skipped.
        let padded = [16, 128, 16, 128, 9, 9, 235, 128, 235, 128, 9, 9];
        let img = yuyv_to_rgb(&padded, 2, 2, 6).unwrap();
        assert_eq!(img.get_pixel(1, 1).0, [255, 255, 255]);
        assert!(yuyv_to_rgb(&data[..6], 4, 1, 8).is_err());
    }

    #[test]
    fn unplugging_is_told_apart_from_a_bad_frame() {
        for errno in [libc::ENODEV, libc::ENXIO, libc::EIO] {
            assert!(device_gone(&std::io::Error::from_raw_os_error(errno)));
        }
        assert!(!device_gone(&std::io::Error::from_raw_os_error(
            libc::EAGAIN
        )));
        assert!(!device_gone(&std::io::Error::other("JPEG")));
        let busy = cam_err(
            Path::new("/dev/video0"),
            "open",
            std::io::Error::from_raw_os_error(libc::EBUSY),
        )
        .to_string();
        assert!(busy.contains("busy") && busy.contains("fuser"), "{busy}");
    }

    #[test]
    fn a_missing_device_names_it_and_says_what_to_check() {
        let e = Camera::open(Path::new("/dev/video-does-not-exist"), 640, 480)
            .err()
            .expect("no such device")
            .to_string();
        assert!(e.contains("/dev/video-does-not-exist"), "{e}");
        assert!(e.contains("plugged in"), "{e}");
    }
}
