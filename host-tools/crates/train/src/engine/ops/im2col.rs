//! im2col and col2im as candle custom ops, each the other's backward pass.
//!
//! candle's own conv2d takes one padding, stride and dilation for both axes, while ONNX
//! convolutions and pools have per-axis values and asymmetric pads (PP-OCR uses stride
//! (2, 1)). Unfolding windows ourselves covers all of it with one kernel: a convolution is then
//! a matmul over the unfolded columns (candle differentiates it, for the weight too, also when
//! the weight is computed in the graph), a pool a max or a sum over them, and a transposed
//! convolution a matmul followed by col2im. The two kernels are adjoint linear maps, which is
//! exactly what makes each the gradient of the other.
//!
//! Layout: the image is `[N, C, H, W]`, the columns `[C·kh·kw, N·oh·ow]` (row
//! `c·kh·kw + i·kw + j` matches a `[O, C, kh, kw]` weight flattened to `[O, C·kh·kw]`), so a whole batch is one
//! large GEMM.

use super::OpResult;
use candle_core::{backend::BackendStorage, CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rayon::prelude::*;

/// The geometry of a 2-D sliding window over an `[N, C, h, w]` image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Window {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub dh: usize,
    pub dw: usize,
    /// Padding before the first row / column (after-padding is implied by `oh`, `ow`).
    pub pt: usize,
    pub pl: usize,
    pub oh: usize,
    pub ow: usize,
    /// Value of positions outside the image (0 for convolutions, -inf for max pooling).
    pub pad_value: f64,
}

impl Window {
    fn rows(&self) -> usize {
        self.c * self.kh * self.kw
    }
    fn cols(&self) -> usize {
        self.n * self.oh * self.ow
    }

    /// Source row of output row `oy` at kernel row `i`, if inside the image.
    #[inline]
    fn src_y(&self, oy: usize, i: usize) -> Option<usize> {
        let y = (oy * self.sh + i * self.dh) as isize - self.pt as isize;
        (y >= 0 && (y as usize) < self.h).then_some(y as usize)
    }

    #[inline]
    fn src_x(&self, ox: usize, j: usize) -> Option<usize> {
        let x = (ox * self.sw + j * self.dw) as isize - self.pl as isize;
        (x >= 0 && (x as usize) < self.w).then_some(x as usize)
    }
}

/// Output length of a window along one axis, `None` if the window does not fit.
pub(crate) fn out_len(
    len: usize,
    k: usize,
    stride: usize,
    dil: usize,
    pad_begin: usize,
    pad_end: usize,
    ceil: bool,
) -> Option<usize> {
    let span = (k - 1) * dil + 1;
    let padded = len + pad_begin + pad_end;
    if padded < span || stride == 0 {
        return None;
    }
    let mut o = if ceil {
        (padded - span).div_ceil(stride) + 1
    } else {
        (padded - span) / stride + 1
    };
    // With ceil mode, a last window starting in the end padding is dropped (as ONNX Runtime
    // and PyTorch do).
    if ceil && (o - 1) * stride >= len + pad_begin {
        o -= 1;
    }
    Some(o)
}

fn im2col_kernel<T: Copy + Send + Sync + Default>(src: &[T], win: &Window, pad: T) -> Vec<T> {
    let cols = win.cols();
    let plane = win.h * win.w;
    let mut dst = vec![T::default(); win.rows() * cols];
    let kk = win.kh * win.kw;
    dst.par_chunks_mut(cols.max(1))
        .enumerate()
        .for_each(|(row, out)| {
            let c = row / kk;
            let i = (row % kk) / win.kw;
            let j = row % win.kw;
            let mut k = 0;
            for n in 0..win.n {
                let img = &src[(n * win.c + c) * plane..(n * win.c + c + 1) * plane];
                for oy in 0..win.oh {
                    match win.src_y(oy, i) {
                        None => {
                            out[k..k + win.ow].fill(pad);
                            k += win.ow;
                        }
                        Some(y) => {
                            let line = &img[y * win.w..(y + 1) * win.w];
                            for ox in 0..win.ow {
                                out[k] = match win.src_x(ox, j) {
                                    Some(x) => line[x],
                                    None => pad,
                                };
                                k += 1;
                            }
                        }
                    }
                }
            }
        });
    dst
}

fn col2im_kernel<T>(src: &[T], win: &Window) -> Vec<T>
where
    T: Copy + Send + Sync + Default + std::ops::AddAssign,
{
    let cols = win.cols();
    let l = win.oh * win.ow;
    let plane = win.h * win.w;
    let kk = win.kh * win.kw;
    let mut dst = vec![T::default(); win.n * win.c * plane];
    // One (n, c) plane per task: each output element is written by one task only.
    dst.par_chunks_mut(plane.max(1))
        .enumerate()
        .for_each(|(nc, img)| {
            let n = nc / win.c;
            let c = nc % win.c;
            for i in 0..win.kh {
                for j in 0..win.kw {
                    let row = c * kk + i * win.kw + j;
                    let col = &src[row * cols + n * l..row * cols + (n + 1) * l];
                    for oy in 0..win.oh {
                        let Some(y) = win.src_y(oy, i) else { continue };
                        for ox in 0..win.ow {
                            if let Some(x) = win.src_x(ox, j) {
                                img[y * win.w + x] += col[oy * win.ow + ox];
                            }
                        }
                    }
                }
            }
        });
    dst
}

fn contiguous_slice<'a, T>(v: &'a [T], layout: &Layout) -> candle_core::Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("im2col/col2im need a contiguous tensor"),
    }
}

/// `[N, C, H, W]` → `[C·kh·kw, N·oh·ow]`.
pub(crate) struct Im2Col(pub Window);

/// `[C·kh·kw, N·oh·ow]` → `[N, C, H, W]`, summing overlapping windows.
pub(crate) struct Col2Im(pub Window);

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "im2col"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let w = &self.0;
        if l.dims() != [w.n, w.c, w.h, w.w] {
            candle_core::bail!("im2col: input {:?} does not match {w:?}", l.dims());
        }
        let shape = Shape::from((w.rows(), w.cols()));
        let out = match s {
            CpuStorage::F32(v) => CpuStorage::F32(im2col_kernel(
                contiguous_slice(v, l)?,
                w,
                w.pad_value as f32,
            )),
            CpuStorage::F64(v) => {
                CpuStorage::F64(im2col_kernel(contiguous_slice(v, l)?, w, w.pad_value))
            }
            other => candle_core::bail!("im2col: unsupported dtype {:?}", other.dtype()),
        };
        Ok((out, shape))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let g = grad.contiguous()?.apply_op1_no_bwd(&Col2Im(self.0))?;
        Ok(Some(g))
    }
}

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "col2im"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let w = &self.0;
        if l.dims() != [w.rows(), w.cols()] {
            candle_core::bail!("col2im: input {:?} does not match {w:?}", l.dims());
        }
        let shape = Shape::from((w.n, w.c, w.h, w.w));
        let out = match s {
            CpuStorage::F32(v) => CpuStorage::F32(col2im_kernel(contiguous_slice(v, l)?, w)),
            CpuStorage::F64(v) => CpuStorage::F64(col2im_kernel(contiguous_slice(v, l)?, w)),
            other => candle_core::bail!("col2im: unsupported dtype {:?}", other.dtype()),
        };
        Ok((out, shape))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        // The adjoint reads zeros outside the image whatever the forward padding was.
        let win = Window {
            pad_value: 0.0,
            ..self.0
        };
        let g = grad.contiguous()?.apply_op1_no_bwd(&Im2Col(win))?;
        Ok(Some(g))
    }
}

/// Unfold `x` (`[N, C, H, W]`) into columns, differentiably.
pub(crate) fn im2col(x: &Tensor, win: Window) -> OpResult<Tensor> {
    Ok(x.contiguous()?.apply_op1(Im2Col(win))?)
}

/// Fold columns back into an image, summing overlaps, differentiably.
pub(crate) fn col2im(cols: &Tensor, win: Window) -> OpResult<Tensor> {
    Ok(cols.contiguous()?.apply_op1(Col2Im(win))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    fn win(h: usize, w: usize) -> Window {
        Window {
            n: 2,
            c: 3,
            h,
            w,
            kh: 3,
            kw: 2,
            sh: 2,
            sw: 1,
            dh: 1,
            dw: 2,
            pt: 1,
            pl: 0,
            oh: out_len(h, 3, 2, 1, 1, 2, false).unwrap(),
            ow: out_len(w, 2, 1, 2, 0, 1, false).unwrap(),
            pad_value: 0.0,
        }
    }

    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        // <im2col(x), y> == <x, col2im(y)> for random x, y: the property the backward passes
        // rely on.
        let w = win(5, 6);
        let dev = Device::Cpu;
        let x = Tensor::randn(0f64, 1., (w.n, w.c, w.h, w.w), &dev).unwrap();
        let y = Tensor::randn(0f64, 1., (w.rows(), w.cols()), &dev).unwrap();
        let ax = im2col(&x, w).unwrap();
        let aty = col2im(&y, w).unwrap();
        let lhs = (ax * &y)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        let rhs = (x * aty)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!(
            (lhs - rhs).abs() < 1e-9 * lhs.abs().max(1.0),
            "{lhs} vs {rhs}"
        );
    }

    #[test]
    fn im2col_reads_the_right_pixels() {
        // 1x1x3x3 image, 2x2 kernel, stride 1, no padding: columns are the 4 windows.
        let w = Window {
            n: 1,
            c: 1,
            h: 3,
            w: 3,
            kh: 2,
            kw: 2,
            sh: 1,
            sw: 1,
            dh: 1,
            dw: 1,
            pt: 0,
            pl: 0,
            oh: 2,
            ow: 2,
            pad_value: -1.0,
        };
        let x = Tensor::arange(0f32, 9., &Device::Cpu)
            .unwrap()
            .reshape((1, 1, 3, 3))
            .unwrap();
        let c = im2col(&x, w).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(c[0], vec![0., 1., 3., 4.]);
        assert_eq!(c[3], vec![4., 5., 7., 8.]);
        // Padding fills with the pad value.
        let wp = Window {
            pt: 1,
            pl: 1,
            oh: 3,
            ow: 3,
            ..w
        };
        let c = im2col(&x, wp).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(c[0][0], -1.0);
        assert_eq!(c[3][0], 0.0);
        assert_eq!(x.dtype(), DType::F32);
    }

    #[test]
    fn output_lengths_follow_onnx() {
        assert_eq!(out_len(48, 3, 2, 1, 1, 1, false), Some(24));
        assert_eq!(out_len(5, 2, 2, 1, 0, 0, false), Some(2));
        assert_eq!(out_len(5, 2, 2, 1, 0, 0, true), Some(3));
        assert_eq!(out_len(2, 3, 1, 1, 0, 0, false), None);
    }
}
