//! One fused op for tract in place of each layer normalisation of the exporter's graphs (and
//! the residual sum that feeds it, when nothing else reads that sum).
//!
//! Why: tract's declutter turns ONNX `LayerNormalization` into six nodes (`Reduce<Sum>`, a
//! `Mul` by 1/H, `Sub`, `RmsNorm`, `Mul` by the scale, `Add` of the bias), and tract's
//! `RmsNorm` kernel is vectorised for AVX-512 only: on an AVX2 CPU it runs scalar. At the
//! paper's size (hidden 128, N = 1000) the two layer norms over the candidates took about a
//! seventh of tract's time (docs/benchmarks.md, session 15). Here each row is read from L1
//! three times (sum, sum of squares, output) by one AVX2 loop each.
//!
//! The pass ([`fuse`]) runs on the decluttered model, before any plan is optimised, like
//! [`super::tract_attention::fuse`], and only on CPUs with AVX2 and FMA
//! ([`super::tract_attention::available`]). It matches exactly this chain over the last axis
//! of an f32 tensor `x` of any rank, each intermediate read only by the next node:
//!
//! `Reduce<Sum>(x)` → `Mul` by a scalar constant `c` → `Sub(x, ·)` → `RmsNorm` (last axis) →
//! `Mul` by a constant of `H` values → `Add` of a constant of `H` values,
//!
//! and, when `x` is an `Add` of two tensors of `x`'s shape read by nothing else, takes that sum
//! in as well. Anything else runs on tract's nodes.
//!
//! Numerics: the same function, `y = (x - mean) / sqrt(mean((x - mean)^2) + eps) * g + b`
//! with `mean = sum * c` as the graph has it; the sums run in another order, and the
//! normalisation is one division (`1 / sqrt(...)`) and products (docs/tolerances.md).

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::{BinMiniOp, TypedBinOp};
use tract_onnx::tract_core::ops::math::{Add, Mul, Sub};
use tract_onnx::tract_core::ops::nn::{Reduce, Reducer, RmsNorm};

use super::tract_attention::{available, replace_chain, sole_reader};

/// `LayerNorm(a [+ b])` over the last axis: inputs `a` (and `b` of the same shape when
/// `residual`), output of their shape.
#[derive(Debug, Clone, PartialEq)]
pub struct FusedLayerNorm {
    /// The constant the graph multiplies the sum by to get the mean (1/H).
    pub inv_h: f32,
    /// Added to the mean of squares before the square root.
    pub eps: f32,
    /// The scale, one value per position of the last axis.
    pub gamma: Vec<f32>,
    /// The bias, one value per position of the last axis.
    pub beta: Vec<f32>,
    /// Two inputs, normalised as their sum.
    pub residual: bool,
}

impl Eq for FusedLayerNorm {}

impl std::hash::Hash for FusedLayerNorm {
    fn hash<Hs: std::hash::Hasher>(&self, state: &mut Hs) {
        self.inv_h.to_bits().hash(state);
        self.eps.to_bits().hash(state);
        for x in self.gamma.iter().chain(&self.beta) {
            x.to_bits().hash(state);
        }
        self.residual.hash(state);
    }
}

impl Op for FusedLayerNorm {
    fn name(&self) -> StaticName {
        "AtrankFusedLayerNorm".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "H: {}, eps: {}, residual: {}",
            self.gamma.len(),
            self.eps,
            self.residual
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for FusedLayerNorm {
    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let want = if self.residual { 2 } else { 1 };
        ensure!(
            inputs.len() == want,
            "fused layer norm: {} inputs (want {want})",
            inputs.len()
        );
        let a = &inputs[0];
        let h = self.gamma.len();
        ensure!(
            a.shape().last() == Some(&h),
            "fused layer norm: input shape {:?}, last axis must be {h}",
            a.shape()
        );
        if self.residual {
            ensure!(
                inputs[1].shape() == a.shape(),
                "fused layer norm: residual shapes {:?} and {:?}",
                a.shape(),
                inputs[1].shape()
            );
        }
        let mut out = Tensor::zero::<f32>(a.shape())?;
        {
            let av = a.try_as_plain_ram()?;
            let bv = if self.residual {
                Some(inputs[1].try_as_plain_ram()?)
            } else {
                None
            };
            let mut ov = out.try_as_plain_ram_mut()?;
            let b = match &bv {
                Some(v) => Some(v.as_slice::<f32>()?),
                None => None,
            };
            normalize(self, av.as_slice::<f32>()?, b, ov.as_slice_mut::<f32>()?);
        }
        Ok(tvec!(out.into_tvalue()))
    }

    op_out_of_plan!();
}

impl TypedOp for FusedLayerNorm {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(
            !inputs.is_empty(),
            "fused layer norm takes one or two inputs"
        );
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    as_op!();
}

/// Replaces every layer normalisation of `model` that matches the pattern above with one
/// [`FusedLayerNorm`] node where the CPU runs its fast path ([`available`]). Returns how many
/// were replaced.
pub fn fuse(model: &mut TypedModel) -> TractResult<usize> {
    if !available() {
        return Ok(0);
    }
    let mut fused = 0;
    while let Some(found) = find(model)? {
        let name = format!("{}.atrank_fused", model.node(found.last).name);
        replace_chain(model, &found.inputs, name, found.op, found.last)?;
        fused += 1;
    }
    if fused > 0 {
        *model = model.clone().into_compact()?;
    }
    Ok(fused)
}

struct Match {
    inputs: Vec<OutletId>,
    op: FusedLayerNorm,
    last: usize,
}

/// The readers of `node`'s single output (none when it is a model output).
fn readers(model: &TypedModel, node: usize) -> Option<Vec<usize>> {
    let n = model.node(node);
    if n.outputs.len() != 1 || model.output_outlets().ok()?.contains(&n.id.into()) {
        return None;
    }
    Some(n.outputs[0].successors.iter().map(|s| s.node).collect())
}

/// A binary op of kind `B`: its two inputs.
fn binary<B: BinMiniOp>(model: &TypedModel, node: usize) -> Option<(OutletId, OutletId)> {
    let n = model.node(node);
    let bin = n.op_as::<TypedBinOp>()?;
    if !bin.0.is::<B>() || n.inputs.len() != 2 {
        return None;
    }
    Some((n.inputs[0], n.inputs[1]))
}

/// An f32 constant's values.
fn const_values(model: &TypedModel, outlet: OutletId) -> Option<Vec<f32>> {
    let fact = model.outlet_fact(outlet).ok()?;
    let k = fact.konst.as_ref()?;
    if k.datum_type() != f32::datum_type() {
        return None;
    }
    let view = k.try_as_plain_ram().ok()?;
    Some(view.as_slice::<f32>().ok()?.to_vec())
}

/// Of a binary node's inputs, the one that is `x` and the constant values of the other (in
/// either order), where the constant's shape is all ones but for its last axis.
fn with_const(model: &TypedModel, (i0, i1): (OutletId, OutletId)) -> Option<(OutletId, Vec<f32>)> {
    for (x, c) in [(i0, i1), (i1, i0)] {
        if model.outlet_fact(x).ok()?.konst.is_some() {
            continue;
        }
        let fact = model.outlet_fact(c).ok()?;
        let shape = fact.shape.as_concrete()?;
        if shape.iter().rev().skip(1).any(|&d| d != 1) {
            continue;
        }
        return Some((x, const_values(model, c)?));
    }
    None
}

fn find(model: &TypedModel) -> TractResult<Option<Match>> {
    for r in model.eval_order()? {
        if let Some(m) = match_at(model, r) {
            return Ok(Some(m));
        }
    }
    Ok(None)
}

/// The chain starting at the `Reduce<Sum>` node `r`, if it has the form above.
fn match_at(model: &TypedModel, r: usize) -> Option<Match> {
    let rnode = model.node(r);
    let reduce = rnode.op_as::<Reduce>()?;
    let x = *rnode.inputs.first()?;
    let fact = model.outlet_fact(x).ok()?;
    let rank = fact.rank();
    if reduce.reducer != Reducer::Sum
        || fact.datum_type != f32::datum_type()
        || rank == 0
        || reduce.axes.as_slice() != [rank - 1]
    {
        return None;
    }
    let h = fact.shape[rank - 1].to_usize().ok()?;
    // sum -> Mul by the scalar c
    let mean = sole_reader(model, r)?;
    let (summed, c) = with_const(model, binary::<Mul>(model, mean)?)?;
    if summed != OutletId::new(r, 0) || c.len() != 1 {
        return None;
    }
    // Sub(x, mean)
    let d = sole_reader(model, mean)?;
    if binary::<Sub>(model, d)? != (x, OutletId::new(mean, 0)) {
        return None;
    }
    // RmsNorm over the last axis
    let n = sole_reader(model, d)?;
    let rms = model.node(n).op_as::<RmsNorm>()?;
    if rms.axis != rank - 1 || rms.eps.len() != 1 {
        return None;
    }
    let eps = rms.eps.cast_to_scalar::<f32>().ok()?;
    // Mul by g, Add b
    let gm = sole_reader(model, n)?;
    let (normed, gamma) = with_const(model, binary::<Mul>(model, gm)?)?;
    let last = sole_reader(model, gm)?;
    let (scaled, beta) = with_const(model, binary::<Add>(model, last)?)?;
    if normed != OutletId::new(n, 0)
        || scaled != OutletId::new(gm, 0)
        || gamma.len() != h
        || beta.len() != h
    {
        return None;
    }
    let out_fact = model.outlet_fact(OutletId::new(last, 0)).ok()?;
    if out_fact.shape != fact.shape || out_fact.datum_type != f32::datum_type() {
        return None;
    }
    // x = a + b, read only by this chain's sum and difference: take the sum in too
    let mut inputs = vec![x];
    let mut residual = false;
    if x.slot == 0 {
        if let (Some((a, b)), Some(mut rd)) = (binary::<Add>(model, x.node), readers(model, x.node))
        {
            rd.sort_unstable();
            let mut chain = vec![r, d];
            chain.sort_unstable();
            let same = |o: OutletId| {
                model
                    .outlet_fact(o)
                    .is_ok_and(|f| f.shape == fact.shape && f.datum_type == f32::datum_type())
            };
            if rd == chain && same(a) && same(b) {
                inputs = vec![a, b];
                residual = true;
            }
        }
    }
    Some(Match {
        inputs,
        op: FusedLayerNorm {
            inv_h: c[0],
            eps,
            gamma,
            beta,
            residual,
        },
        last,
    })
}

/// Every row of `a` (+ `b`), normalised into `out`; AVX2 and FMA when the CPU has them.
fn normalize(op: &FusedLayerNorm, a: &[f32], b: Option<&[f32]>, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if available() && !op.gamma.is_empty() {
            #[allow(unsafe_code)]
            // SAFETY: the CPU has AVX2 and FMA, the only requirements of `avx2::normalize`.
            unsafe {
                avx2::normalize(op, a, b, out)
            };
            return;
        }
    }
    normalize_portable(op, a, b, out);
}

/// The portable build: the same operations, one lane at a time.
fn normalize_portable(op: &FusedLayerNorm, a: &[f32], b: Option<&[f32]>, out: &mut [f32]) {
    let h = op.gamma.len();
    if h == 0 {
        return;
    }
    for (r, o) in out.chunks_exact_mut(h).enumerate() {
        let ar = &a[r * h..][..h];
        match b {
            Some(b) => {
                for ((y, &x), &z) in o.iter_mut().zip(ar).zip(&b[r * h..][..h]) {
                    *y = x + z;
                }
            }
            None => o.copy_from_slice(ar),
        }
        let mean = o.iter().sum::<f32>() * op.inv_h;
        let ss: f32 = o.iter().map(|&x| (x - mean) * (x - mean)).sum();
        let inv = 1.0 / (ss * op.inv_h + op.eps).sqrt();
        for ((y, &g), &bb) in o.iter_mut().zip(&op.gamma).zip(&op.beta) {
            *y = (*y - mean) * inv * g + bb;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx2 {
    use super::FusedLayerNorm;
    use std::arch::x86_64::*;

    const R: usize = 8;

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f32 {
        let m = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let m = _mm_add_ps(m, _mm_movehl_ps(m, m));
        let m = _mm_add_ss(m, _mm_shuffle_ps::<1>(m, m));
        _mm_cvtss_f32(m)
    }

    /// Per row: (the residual sum into `out` and) the sum, then the sum of squared
    /// differences, then the output, each an AVX2 loop over the row's whole registers (two
    /// accumulators per reduction) and a scalar loop over its last `H mod 8` lanes.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn normalize(op: &FusedLayerNorm, a: &[f32], b: Option<&[f32]>, out: &mut [f32]) {
        let h = op.gamma.len();
        assert!(h > 0 && a.len() == out.len() && out.len().is_multiple_of(h));
        assert!(b.is_none_or(|b| b.len() == out.len()) && op.beta.len() == h);
        let body = h / R * R;
        let (g, be) = (&op.gamma[..], &op.beta[..]);
        for (r, o) in out.chunks_exact_mut(h).enumerate() {
            let ar = &a[r * h..][..h];
            match b {
                Some(b) => {
                    let br = &b[r * h..][..h];
                    for i in (0..body).step_by(R) {
                        // SAFETY: i + R <= body <= h, the length of ar, br and o.
                        unsafe {
                            let x = _mm256_add_ps(
                                _mm256_loadu_ps(ar.as_ptr().add(i)),
                                _mm256_loadu_ps(br.as_ptr().add(i)),
                            );
                            _mm256_storeu_ps(o.as_mut_ptr().add(i), x);
                        }
                    }
                    for i in body..h {
                        o[i] = ar[i] + br[i];
                    }
                }
                None => o.copy_from_slice(ar),
            }
            let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            for (k, i) in (0..body).step_by(R).enumerate() {
                // SAFETY: i + R <= h.
                let x = unsafe { _mm256_loadu_ps(o.as_ptr().add(i)) };
                if k % 2 == 0 {
                    s0 = _mm256_add_ps(s0, x);
                } else {
                    s1 = _mm256_add_ps(s1, x);
                }
            }
            let mut sum = hsum(_mm256_add_ps(s0, s1));
            for &x in &o[body..] {
                sum += x;
            }
            let mean = sum * op.inv_h;
            let vmean = _mm256_set1_ps(mean);
            let (mut q0, mut q1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            for (k, i) in (0..body).step_by(R).enumerate() {
                // SAFETY: i + R <= h.
                let d = _mm256_sub_ps(unsafe { _mm256_loadu_ps(o.as_ptr().add(i)) }, vmean);
                if k % 2 == 0 {
                    q0 = _mm256_fmadd_ps(d, d, q0);
                } else {
                    q1 = _mm256_fmadd_ps(d, d, q1);
                }
            }
            let mut ss = hsum(_mm256_add_ps(q0, q1));
            for &x in &o[body..] {
                ss += (x - mean) * (x - mean);
            }
            let inv = 1.0 / (ss * op.inv_h + op.eps).sqrt();
            let vinv = _mm256_set1_ps(inv);
            for i in (0..body).step_by(R) {
                // SAFETY: i + R <= h, the length of o, g and be.
                unsafe {
                    let d = _mm256_sub_ps(_mm256_loadu_ps(o.as_ptr().add(i)), vmean);
                    let y = _mm256_fmadd_ps(
                        _mm256_mul_ps(d, vinv),
                        _mm256_loadu_ps(g.as_ptr().add(i)),
                        _mm256_loadu_ps(be.as_ptr().add(i)),
                    );
                    _mm256_storeu_ps(o.as_mut_ptr().add(i), y);
                }
            }
            for i in body..h {
                o[i] = (o[i] - mean) * inv * g[i] + be[i];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both builds against an `f64` evaluation of the same formula, on rows of several widths
    /// (whole registers, a remainder, fewer lanes than a register), with and without the
    /// residual input.
    #[test]
    fn kernel_matches_f64_reference() {
        let mut rnd = super::super::tract_attention::uniform(0x9e37_79b9_7f4a_7c15);
        let u = 1.0 / 16_777_216.0f64;
        for &(rows, h) in &[(3, 1), (5, 7), (4, 8), (9, 64), (17, 128), (3, 130)] {
            for residual in [false, true] {
                let op = FusedLayerNorm {
                    inv_h: 1.0 / h as f32,
                    eps: 1e-5,
                    gamma: (0..h).map(|_| 1.0 + rnd() * 0.5).collect(),
                    beta: (0..h).map(|_| rnd() * 0.1).collect(),
                    residual,
                };
                // rows with an offset (a mean far from 0) and one constant row (variance 0)
                let mut a: Vec<f32> = (0..rows * h)
                    .map(|i| rnd() * 3.0 + (i / h) as f32)
                    .collect();
                a[..h].fill(0.75);
                let b: Vec<f32> = (0..rows * h).map(|_| rnd()).collect();
                let b = residual.then_some(&b[..]);
                let mut fast = vec![0f32; rows * h];
                normalize(&op, &a, b, &mut fast);
                let mut portable = vec![0f32; rows * h];
                normalize_portable(&op, &a, b, &mut portable);
                for out in [&fast, &portable] {
                    for r in 0..rows {
                        // x as the kernel sees it: a + b rounded once to f32
                        let x: Vec<f64> = (0..h)
                            .map(|i| {
                                let v = a[r * h + i] + b.map_or(0.0, |b| b[r * h + i]);
                                v as f64
                            })
                            .collect();
                        let hf = h as f64;
                        let mean = x.iter().sum::<f64>() / hf;
                        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / hf;
                        let inv = 1.0 / (var + op.eps as f64).sqrt();
                        let m = x.iter().fold(0f64, |m, v| m.max(v.abs()));
                        // First order in U, per output: the mean's error, from H - 1 sums of
                        // terms up to H M and a product, is at most (H + 1) U M, so is d's
                        // with its own rounding: e_d = (H + 2) U M. The mean of squares: each
                        // square moves by 2 |d| e_d + U d^2 <= 4 M e_d + 4 U M^2, the sum
                        // adds (H - 1) U of at most 4 H M^2, the product and eps 2 U:
                        // e_v <= 4 M e_d + (4 H + 6) U M^2. Then 1 / sqrt: relative
                        // e_v / (2 (var + eps)) + 3 U (sqrt, division, their inputs). The
                        // output g d inv + b: |g| (e_d inv + |d| inv (that + 3 U)) + U |b|.
                        // Doubled for second-order terms.
                        let e_d = (hf + 2.0) * u * m;
                        let e_v = 4.0 * m * e_d + (4.0 * hf + 6.0) * u * m * m;
                        let rel_inv = e_v / (2.0 * (var + op.eps as f64)) + 3.0 * u;
                        for i in 0..h {
                            let d = x[i] - mean;
                            let g = op.gamma[i] as f64;
                            let want = d * inv * g + op.beta[i] as f64;
                            let tol = 2.0
                                * (g.abs() * (e_d * inv + d.abs() * inv * (rel_inv + 3.0 * u))
                                    + u * (op.beta[i] as f64).abs()
                                    + u * want.abs());
                            let got = out[r * h + i] as f64;
                            assert!(
                                (got - want).abs() <= tol,
                                "rows {rows} h {h} residual {residual} row {r} lane {i}: \
                                 {got} vs {want} (tol {tol:e})"
                            );
                        }
                    }
                }
            }
        }
    }
}
