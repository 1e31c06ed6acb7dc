//! The live server's request reader (`--serve`) on arbitrary bytes, delivered in chunks
//! whose sizes come from the input, as a slow or hostile client would send them.
#![no_main]

use edgeslim_runtime::serve::http::{read_request, Limits};
use libfuzzer_sys::fuzz_target;
use std::io::Read;

/// Hands out `data` in pieces of 1 to 16 bytes, the sizes taken from the input's first bytes.
struct Chunked<'a> {
    data: &'a [u8],
    sizes: &'a [u8],
    at: usize,
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let step = self
            .sizes
            .get(self.at % self.sizes.len().max(1))
            .map_or(16, |s| usize::from(s % 16) + 1);
        self.at += 1;
        let n = step.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fuzz_target!(|data: &[u8]| {
    let (sizes, body) = data.split_at(data.len().min(8));
    let mut stream = Chunked {
        data: body,
        sizes,
        at: 0,
    };
    let limits = Limits {
        max_head: 2048,
        max_body: 4096,
        ..Limits::default()
    };
    if let Ok(req) = read_request(&mut stream, &limits) {
        assert!(req.body.len() <= limits.max_body);
        let _ = req.header("content-type");
    }
});
