//! What a frame loop publishes to: the live-view server, or a test double. The inspection line
//! (`inspect::run`) and the tracker (`track::live::run`) both publish through [`View`], so
//! neither loop has a `#[cfg(feature = "serve")]` inside it.

use crate::error::{Result, RuntimeError};
use std::time::Instant;

/// A frame as the JPEG the live view streams (and recordings keep), at `quality` (1-100).
pub fn encode_jpeg(img: &image::RgbImage, quality: u8) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(img)
        .map_err(|e| RuntimeError::Other(format!("encoding a JPEG frame: {e}")))?;
    Ok(out)
}

/// How the frames reach the viewers, for the page's own status line.
#[derive(Debug, Clone, Default)]
pub struct ViewerStats {
    pub viewers: usize,
    /// Frames replaced in a viewer's mailbox before that viewer took them.
    pub frames_dropped: u64,
    /// Capture-to-socket latency summary (JSON, `null` when nothing was sent yet).
    pub delivery_ms: serde_json::Value,
}

pub trait View {
    fn has_viewers(&self) -> bool;
    fn publish_jpeg(&self, jpeg: Vec<u8>);
    /// Publish a frame captured at `captured`, so delivery latency counts from the capture.
    fn publish_jpeg_since(&self, jpeg: Vec<u8>, _captured: Instant) {
        self.publish_jpeg(jpeg)
    }
    fn set_state(&self, state: serde_json::Value);
    /// The next user action: (name, JSON body).
    fn next_action(&self) -> Option<(String, serde_json::Value)>;
    /// The size of the frame on the page (actions carrying boxes are checked against it).
    fn frame_size(&self, _width: u32, _height: u32) {}
    fn viewer_stats(&self) -> ViewerStats {
        ViewerStats::default()
    }
}

#[cfg(feature = "serve")]
impl View for crate::serve::LiveServer {
    fn has_viewers(&self) -> bool {
        crate::serve::LiveServer::has_viewers(self)
    }
    fn publish_jpeg(&self, jpeg: Vec<u8>) {
        crate::serve::LiveServer::publish_jpeg(self, jpeg)
    }
    fn publish_jpeg_since(&self, jpeg: Vec<u8>, captured: Instant) {
        crate::serve::LiveServer::publish_jpeg_since(self, jpeg, captured)
    }
    fn set_state(&self, state: serde_json::Value) {
        crate::serve::LiveServer::set_state(self, state)
    }
    fn next_action(&self) -> Option<(String, serde_json::Value)> {
        self.try_action().map(|a| (a.name, a.body))
    }
    fn viewer_stats(&self) -> ViewerStats {
        let s = self.stats();
        ViewerStats {
            viewers: s.viewers,
            frames_dropped: s.frames_dropped,
            delivery_ms: serde_json::to_value(&s.delivery_ms).unwrap_or_default(),
        }
    }
}
