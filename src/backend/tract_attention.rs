//! One fused op for tract in place of each attention core of the exporter's graphs:
//! `softmax(q k^T * scale) v`, which tract otherwise runs as a score matmul, a scalar `Mul`, a
//! row `Softmax` and a second matmul over [B, heads, N, L].
//!
//! Why: at the paper's size (hidden 128, 8 heads, N = 1000) those four nodes took about half of
//! tract's time (docs/benchmarks.md). tract packs the [heads, N, L] weights into its matmul
//! kernel's panel layout (a strided copy as large as the product itself) and runs the softmax
//! row by row through three kernel calls. Here each candidate's scores live in one short
//! buffer from the dot products to the weighted sum of the values, and nothing of size
//! [heads, N, L] is ever written.
//!
//! The pass ([`fuse`]) runs on the decluttered model, before any plan is optimised. It
//! matches the exact node chain the exporter's graphs produce after tract's declutter
//! (`EinSum ambk,anbk->abmn` → optional `Mul` by a scalar constant → `Softmax` over the last
//! axis → `EinSum abmk,akbn->ambn`, each intermediate read by the next node only) and leaves
//! anything else to tract: a graph it does not recognise runs exactly as before.
//!
//! Numerics: the same real-number function. The dot products, the max, the sum of the
//! exponentials and the weighted sum are each one reduction, as in tract's own kernels
//! (another summation order); `exp` is this module's own polynomial, whose relative error is
//! at most 4 units of float32's roundoff on the domain it is used on (a test checks it against `f64`);
//! docs/tolerances.md has the accounting.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::math::Mul;
use tract_onnx::tract_core::ops::nn::{Softmax, SoftmaxKind};

/// The score product as tract's declutter writes it: q [B, M, H, Dq] and k [B, L, H, Dq] into
/// scores [B, H, M, L].
const SCORES: &str = "ambk,anbk->abmn";
/// The weighted sum: weights [B, H, M, L] and v [B, L, H, Dv] into [B, M, H, Dv].
const WEIGHTED: &str = "abmk,akbn->ambn";

/// A bound on the relative error of [`exp_nonpositive`] on [-87, 0], in units of float32's
/// roundoff `2^-24` (derived in its documentation; this module's tests check it against
/// `f64::exp`).
#[cfg(test)]
const EXP_MAX_REL_ERROR: f32 = 4.0;

/// `softmax(q k^T * scale) v` for one batch of queries: inputs q [B, M, H, Dq], k [B, L, H, Dq],
/// v [B, L, H, Dv]; output [B, M, H, Dv]. The softmax runs over L.
#[derive(Debug, Clone, PartialEq)]
pub struct FusedAttention {
    /// The scalar the scores are multiplied by before the softmax (1 when the graph has none).
    pub scale: f32,
}

impl Eq for FusedAttention {}

impl std::hash::Hash for FusedAttention {
    fn hash<Hs: std::hash::Hasher>(&self, state: &mut Hs) {
        self.scale.to_bits().hash(state);
    }
}

impl Op for FusedAttention {
    fn name(&self) -> StaticName {
        "AtrankFusedAttention".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("scale: {}", self.scale)])
    }

    op_as_typed_op!();
}

impl EvalOp for FusedAttention {
    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (q, k, v) = args_3!(inputs);
        let (qs, ks, vs) = (q.shape(), k.shape(), v.shape());
        ensure!(
            qs.len() == 4 && ks.len() == 4 && vs.len() == 4,
            "fused attention: inputs of rank {}, {}, {} (want 4)",
            qs.len(),
            ks.len(),
            vs.len()
        );
        let dims = Dims {
            b: qs[0],
            m: qs[1],
            h: qs[2],
            dq: qs[3],
            l: ks[1],
            dv: vs[3],
        };
        ensure!(
            ks == [dims.b, dims.l, dims.h, dims.dq] && vs[..3] == [dims.b, dims.l, dims.h],
            "fused attention: shapes q {qs:?}, k {ks:?}, v {vs:?} do not agree"
        );
        let mut out = Tensor::zero::<f32>(&[dims.b, dims.m, dims.h, dims.dv])?;
        {
            let qv = q.try_as_plain_ram()?;
            let kv = k.try_as_plain_ram()?;
            let vv = v.try_as_plain_ram()?;
            let mut ov = out.try_as_plain_ram_mut()?;
            attend(
                dims,
                self.scale,
                qv.as_slice::<f32>()?,
                kv.as_slice::<f32>()?,
                vv.as_slice::<f32>()?,
                ov.as_slice_mut::<f32>()?,
            );
        }
        Ok(tvec!(out.into_tvalue()))
    }

    op_out_of_plan!();
}

impl TypedOp for FusedAttention {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 3, "fused attention takes q, k, v");
        let (q, v) = (&inputs[0].shape, &inputs[2].shape);
        ensure!(
            q.rank() == 4 && v.rank() == 4,
            "fused attention: inputs must have rank 4"
        );
        let shape: TVec<TDim> = tvec![q[0].clone(), q[1].clone(), q[2].clone(), v[3].clone()];
        Ok(tvec!(f32::fact(shape)))
    }

    as_op!();
}

#[derive(Debug, Clone, Copy)]
struct Dims {
    b: usize,
    m: usize,
    h: usize,
    dq: usize,
    l: usize,
    dv: usize,
}

/// Replaces every attention core of `model` that matches the exporter's pattern with one
/// [`FusedAttention`] node, where the CPU runs its fast path ([`available`]). Returns how many
/// were replaced. Nodes left without readers are
/// removed by tract's optimiser when a plan is built.
pub fn fuse(model: &mut TypedModel) -> TractResult<usize> {
    let mut fused = 0;
    if !available() {
        return Ok(0);
    }
    // One match at a time: a patch renumbers nothing it does not touch, but re-scanning after
    // each keeps the look-ups simple.
    while let Some(found) = find(model)? {
        let name = format!("{}.atrank_fused", model.node(found.softmax).name);
        let op = FusedAttention { scale: found.scale };
        replace_chain(
            model,
            &[found.q, found.k, found.v],
            name,
            op,
            found.weighted,
        )?;
        fused += 1;
    }
    if fused > 0 {
        *model = model.clone().into_compact()?;
    }
    Ok(fused)
}

/// Wires `op` on `inputs` and gives its output to every reader of node `last`'s output; the
/// chain that `last` ended is left without readers, for tract's optimiser to remove.
pub(super) fn replace_chain(
    model: &mut TypedModel,
    inputs: &[OutletId],
    name: String,
    op: impl TypedOp,
    last: usize,
) -> TractResult<()> {
    let mut patch = TypedModelPatch::default();
    let mut taps: TVec<OutletId> = tvec!();
    for o in inputs {
        taps.push(patch.tap_model(model, *o)?);
    }
    let out = patch.wire_node(name, op, &taps)?;
    patch.shunt_outside(model, OutletId::new(last, 0), out[0])?;
    patch.apply(model)
}

struct Match {
    q: OutletId,
    k: OutletId,
    v: OutletId,
    scale: f32,
    softmax: usize,
    weighted: usize,
}

fn einsum_is(node: &TypedNode, expr: &str) -> bool {
    node.op_as::<EinSum>().is_some_and(|e| {
        e.q_params.is_none() && e.operating_dt == f32::datum_type() && e.axes.to_string() == expr
    })
}

/// The only node reading `node`'s single output, if exactly one does.
pub(super) fn sole_reader(model: &TypedModel, node: usize) -> Option<usize> {
    let n = model.node(node);
    if n.outputs.len() != 1 || n.outputs[0].successors.len() != 1 {
        return None;
    }
    let outlet = OutletId::new(node, 0);
    if model.output_outlets().ok()?.contains(&outlet) {
        return None;
    }
    Some(n.outputs[0].successors[0].node)
}

/// The value of a scalar f32 constant (any shape of volume 1).
fn scalar_const(model: &TypedModel, outlet: OutletId) -> Option<f32> {
    let fact = model.outlet_fact(outlet).ok()?;
    let k = fact.konst.as_ref()?;
    if k.datum_type() != f32::datum_type() || k.len() != 1 {
        return None;
    }
    let view = k.try_as_plain_ram().ok()?;
    view.as_slice::<f32>().ok()?.first().copied()
}

fn find(model: &TypedModel) -> TractResult<Option<Match>> {
    for sm in model.eval_order()? {
        let node = model.node(sm);
        let Some(op) = node.op_as::<Softmax>() else {
            continue;
        };
        let fact = model.outlet_fact(node.inputs[0])?;
        if op.kind != SoftmaxKind::Softmax
            || op.quant_output_dt.is_some()
            || fact.rank() != 4
            || op.axes.as_slice() != [3]
            || fact.datum_type != f32::datum_type()
        {
            continue;
        }
        // softmax -> the weighted sum, reading the weights as its first input
        let Some(weighted) = sole_reader(model, sm) else {
            continue;
        };
        let wnode = model.node(weighted);
        if !einsum_is(wnode, WEIGHTED) || wnode.inputs.len() != 2 || wnode.inputs[0].node != sm {
            continue;
        }
        // softmax <- [Mul by a scalar constant] <- the score product
        let mut scale = 1.0f32;
        let mut prev = node.inputs[0].node;
        if let Some(bin) = model.node(prev).op_as::<TypedBinOp>() {
            if !bin.0.is::<Mul>() || sole_reader(model, prev) != Some(sm) {
                continue;
            }
            let inputs = &model.node(prev).inputs;
            let (s, other) = match (
                scalar_const(model, inputs[0]),
                scalar_const(model, inputs[1]),
            ) {
                (None, Some(s)) => (s, inputs[0]),
                (Some(s), None) => (s, inputs[1]),
                _ => continue,
            };
            scale = s;
            prev = other.node;
            if other.slot != 0 {
                continue;
            }
        }
        let snode = model.node(prev);
        // the score product feeds the Mul when there is one, else the softmax itself
        let expected_reader = if prev == node.inputs[0].node {
            sm
        } else {
            node.inputs[0].node
        };
        if !einsum_is(snode, SCORES)
            || snode.inputs.len() != 2
            || sole_reader(model, prev) != Some(expected_reader)
        {
            continue;
        }
        let (q, k, v) = (snode.inputs[0], snode.inputs[1], wnode.inputs[1]);
        let all_f32 = [q, k, v]
            .iter()
            .map(|o| {
                model
                    .outlet_fact(*o)
                    .map(|f| f.datum_type == f32::datum_type())
            })
            .collect::<TractResult<Vec<bool>>>()?;
        if all_f32.iter().all(|&x| x) {
            return Ok(Some(Match {
                q,
                k,
                v,
                scale,
                softmax: sm,
                weighted,
            }));
        }
    }
    Ok(None)
}

/// Whether this CPU runs the kernel's fast path (x86-64 with AVX2 and FMA). [`fuse`] leaves
/// the graph to tract's own kernels elsewhere: the portable build of the kernel was measured
/// slower than tract's nodes on x86-64 without those instructions, and was not measured on
/// other architectures.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The kernel, compiled for AVX2 and FMA when the CPU has them (chosen at run time), else the
/// portable build (reached only through the op's `eval` on a graph fused elsewhere, and by
/// the tests).
fn attend(d: Dims, scale: f32, q: &[f32], k: &[f32], v: &[f32], out: &mut [f32]) {
    if d.l == 0 {
        // no keys: a weighted sum over nothing, as tract's matmul over an empty axis gives
        out.fill(0.0);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if available() {
            #[allow(unsafe_code)]
            // SAFETY: the CPU has AVX2 and FMA, the only requirements of `attend_avx2`.
            unsafe {
                attend_avx2(d, scale, q, k, v, out)
            };
            return;
        }
    }
    attend_with::<false>(d, scale, q, k, v, out);
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx2,fma")]
unsafe fn attend_avx2(d: Dims, scale: f32, q: &[f32], k: &[f32], v: &[f32], out: &mut [f32]) {
    if d.dv <= avx2::DV {
        avx2::attend(d, scale, q, k, v, out);
    } else {
        attend_with::<true>(d, scale, q, k, v, out);
    }
}

/// The kernel in AVX2 and FMA intrinsics, for at most [`avx2::DV`] value floats per head (the
/// exporter's heads have 8 or 16). The compiler's own vectorisation of the portable build
/// keeps its accumulators in memory, which made it several times slower. The same arithmetic
/// as `attend_with::<true>` but for the order of the sums, and the same `exp` bit for bit
/// (tested).
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx2 {
    use super::Dims;
    use std::arch::x86_64::*;

    /// The most value floats per head this kernel takes (two registers).
    pub(super) const DV: usize = 16;
    /// Lanes per register.
    const R: usize = 8;
    /// Registers of scores accumulated together (independent chains of multiply-adds): 8
    /// covers a history of 64 (tract's padded 50) in one pass and hides the FMA latency.
    const CHAINS: usize = 8;

    /// `exp_nonpositive::<true>` on eight lanes: the same operations in the same order.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn exp8(x: __m256) -> __m256 {
        let lo = _mm256_set1_ps(-87.0);
        // max(lo, x) returns its second operand when either is NaN: a NaN stays NaN
        let xc = _mm256_max_ps(lo, x);
        let round = _mm256_set1_ps(12_582_912.0);
        let big = _mm256_fmadd_ps(xc, _mm256_set1_ps(std::f32::consts::LOG2_E), round);
        let n = _mm256_sub_ps(big, round);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_145_75), xc);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428_606_8e-6), r);
        let mut p = _mm256_set1_ps(1.0 / 5040.0);
        for c in [
            1.0 / 720.0,
            1.0 / 120.0,
            1.0 / 24.0,
            1.0 / 6.0,
            0.5,
            1.0,
            1.0,
        ] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
        }
        let ni = _mm256_sub_epi32(
            _mm256_castps_si256(big),
            _mm256_set1_epi32(12_582_912.0f32.to_bits() as i32),
        );
        let biased = _mm256_add_epi32(ni, _mm256_set1_epi32(127));
        let two_n = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(biased));
        let y = _mm256_mul_ps(p, two_n);
        // below -87: 0 (a NaN compares false and keeps y, which is NaN)
        _mm256_andnot_ps(_mm256_cmp_ps::<_CMP_LT_OQ>(x, lo), y)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn hmax(v: __m256) -> f32 {
        let m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let m = _mm_max_ss(m, _mm_shuffle_ps::<1>(m, m));
        _mm_cvtss_f32(m)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f32 {
        let m = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let m = _mm_add_ps(m, _mm_movehl_ps(m, m));
        let m = _mm_add_ss(m, _mm_shuffle_ps::<1>(m, m));
        _mm_cvtss_f32(m)
    }

    /// The scores of keys `c0 .. c0 + NR * R` (`kt`: `dq` rows of `lp` lanes) for one query,
    /// times `scale`, into `s`: `NR` independent chains of `dq` multiply-adds.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn scores<const NR: usize>(
        qrow: &[f32],
        kt: &[f32],
        lp: usize,
        c0: usize,
        scale: __m256,
        s: &mut [f32],
    ) {
        let mut acc = [_mm256_setzero_ps(); NR];
        for (j, &qj) in qrow.iter().enumerate() {
            let qv = _mm256_set1_ps(qj);
            let kr = &kt[j * lp + c0..][..NR * R];
            for (c, a) in acc.iter_mut().enumerate() {
                // SAFETY: `kr` holds NR * R floats.
                let kv = unsafe { _mm256_loadu_ps(kr.as_ptr().add(c * R)) };
                *a = _mm256_fmadd_ps(qv, kv, *a);
            }
        }
        let sr = &mut s[c0..][..NR * R];
        for (c, a) in acc.iter().enumerate() {
            // SAFETY: `sr` holds NR * R floats.
            unsafe { _mm256_storeu_ps(sr.as_mut_ptr().add(c * R), _mm256_mul_ps(*a, scale)) };
        }
    }

    /// Per (batch, head): the keys as `dq` rows of L lanes (padded with zeros to a whole
    /// number of registers) and the values as L rows of `DV` floats (padded with
    /// zeros); per query: the scores `CHAINS` registers at a time, the softmax (padding lanes
    /// -inf, so weight 0), the weighted sum by the unnormalised weights (each broadcast from
    /// memory, a load) as four partial sums (rows `li mod 4`), divided once at the end.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn attend(d: Dims, scale: f32, q: &[f32], k: &[f32], v: &[f32], out: &mut [f32]) {
        let Dims { b, m, h, dq, l, dv } = d;
        assert!(dv <= DV && q.len() >= b * m * h * dq && k.len() >= b * l * h * dq);
        assert!(v.len() >= b * l * h * dv && out.len() >= b * m * h * dv);
        let lp = l.div_ceil(R) * R;
        let mut kt = vec![0f32; dq * lp];
        let mut vh = vec![0f32; l * DV];
        let mut s = vec![0f32; lp];
        let mut row = [0f32; DV];
        let vscale = _mm256_set1_ps(scale);
        for bi in 0..b {
            for hi in 0..h {
                for li in 0..l {
                    let krow = &k[((bi * l + li) * h + hi) * dq..][..dq];
                    for (j, &x) in krow.iter().enumerate() {
                        kt[j * lp + li] = x;
                    }
                    vh[li * DV..li * DV + dv]
                        .copy_from_slice(&v[((bi * l + li) * h + hi) * dv..][..dv]);
                }
                for mi in 0..m {
                    let qrow = &q[((bi * m + mi) * h + hi) * dq..][..dq];
                    // whole blocks of CHAINS registers, then one of half as many, then
                    // single registers (a short history pays for no more than 7 lanes)
                    let mut c0 = 0;
                    while c0 + R * CHAINS <= lp {
                        scores::<CHAINS>(qrow, &kt, lp, c0, vscale, &mut s);
                        c0 += R * CHAINS;
                    }
                    if c0 + R * CHAINS / 2 <= lp {
                        scores::<{ CHAINS / 2 }>(qrow, &kt, lp, c0, vscale, &mut s);
                        c0 += R * CHAINS / 2;
                    }
                    while c0 < lp {
                        scores::<1>(qrow, &kt, lp, c0, vscale, &mut s);
                        c0 += R;
                    }
                    s[l..].fill(f32::NEG_INFINITY);
                    let mut vmax = _mm256_set1_ps(f32::NEG_INFINITY);
                    for c in s.chunks_exact(R) {
                        // SAFETY: `c` holds R floats.
                        vmax = _mm256_max_ps(vmax, unsafe { _mm256_loadu_ps(c.as_ptr()) });
                    }
                    let max = _mm256_set1_ps(hmax(vmax));
                    let mut vsum = _mm256_setzero_ps();
                    for c in s.chunks_exact_mut(R) {
                        // SAFETY: `c` holds R floats.
                        let x = unsafe { _mm256_loadu_ps(c.as_ptr()) };
                        let e = exp8(_mm256_sub_ps(x, max));
                        vsum = _mm256_add_ps(vsum, e);
                        // SAFETY: as above.
                        unsafe { _mm256_storeu_ps(c.as_mut_ptr(), e) };
                    }
                    let inv = 1.0 / hsum(vsum);
                    // four named partial sums (rows li mod 4), two registers each: an array
                    // indexed at run time would live in memory
                    let z = _mm256_setzero_ps();
                    let (mut a0, mut a1, mut a2, mut a3) = ([z; 2], [z; 2], [z; 2], [z; 2]);
                    let quads = vh.chunks_exact(4 * DV);
                    let rest = quads.remainder();
                    for (qi, vq) in quads.enumerate() {
                        let w = &s[qi * 4..qi * 4 + 4];
                        for (acc, vr, wl) in [
                            (&mut a0, &vq[..DV], &w[0]),
                            (&mut a1, &vq[DV..2 * DV], &w[1]),
                            (&mut a2, &vq[2 * DV..3 * DV], &w[2]),
                            (&mut a3, &vq[3 * DV..], &w[3]),
                        ] {
                            let wv = _mm256_broadcast_ss(wl);
                            // SAFETY: `vr` holds DV = 2 * R floats.
                            let (v0, v1) = unsafe {
                                (
                                    _mm256_loadu_ps(vr.as_ptr()),
                                    _mm256_loadu_ps(vr.as_ptr().add(R)),
                                )
                            };
                            acc[0] = _mm256_fmadd_ps(wv, v0, acc[0]);
                            acc[1] = _mm256_fmadd_ps(wv, v1, acc[1]);
                        }
                    }
                    // the last L mod 4 rows into the sums their row numbers give, as in the
                    // loop: a row lands in the same sum whatever L is, so padding the history
                    // (weight 0, values 0: exact zeros) leaves every score bit for bit the same
                    let done = l - rest.len() / DV;
                    for (k, vr) in rest.chunks_exact(DV).enumerate() {
                        let wv = _mm256_broadcast_ss(&s[done + k]);
                        // SAFETY: `vr` holds DV = 2 * R floats.
                        let (v0, v1) = unsafe {
                            (
                                _mm256_loadu_ps(vr.as_ptr()),
                                _mm256_loadu_ps(vr.as_ptr().add(R)),
                            )
                        };
                        let acc = match k {
                            0 => &mut a0,
                            1 => &mut a1,
                            _ => &mut a2,
                        };
                        acc[0] = _mm256_fmadd_ps(wv, v0, acc[0]);
                        acc[1] = _mm256_fmadd_ps(wv, v1, acc[1]);
                    }
                    let vinv = _mm256_set1_ps(inv);
                    for half in [0, 1] {
                        let x = _mm256_add_ps(
                            _mm256_add_ps(a0[half], a1[half]),
                            _mm256_add_ps(a2[half], a3[half]),
                        );
                        let x = _mm256_mul_ps(x, vinv);
                        // SAFETY: `row` holds DV = 2 * R floats.
                        unsafe { _mm256_storeu_ps(row.as_mut_ptr().add(half * R), x) };
                    }
                    out[((bi * m + mi) * h + hi) * dv..][..dv].copy_from_slice(&row[..dv]);
                }
            }
        }
    }
}

/// `a * b + c`, fused (one rounding) where the caller's instruction set has FMA.
#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// A block of lanes: the kernel works on fixed-size arrays, which the compiler keeps in vector
/// registers (two AVX2 registers, four SSE ones) whatever the tensors' runtime sizes.
const W: usize = 16;
type Block = [f32; W];

/// The computation. Per (batch, head), the keys are laid out as `dq` rows of L (in blocks of
/// [`W`], padding lanes 0) and the values as L rows of Dv (padded to a whole block); per query,
/// its scores stay in registers/L1 from the dot products to the weighted sum.
#[inline(always)]
fn attend_with<const FMA: bool>(
    d: Dims,
    scale: f32,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &mut [f32],
) {
    let Dims { b, m, h, dq, l, dv } = d;
    if l == 0 {
        // no keys: the sum over nothing (the division at the end would give 0 / 0)
        out.fill(0.0);
        return;
    }
    let lb = l.div_ceil(W);
    let db = dv.div_ceil(W);
    let mut kt = vec![[0f32; W]; dq * lb];
    let mut vh = vec![[0f32; W]; l * db];
    let mut s = vec![[0f32; W]; lb];
    let mut acc = vec![[0f32; W]; db];
    for bi in 0..b {
        for hi in 0..h {
            for li in 0..l {
                let krow = &k[((bi * l + li) * h + hi) * dq..][..dq];
                for (j, &x) in krow.iter().enumerate() {
                    kt[j * lb + li / W][li % W] = x;
                }
                let vrow = &v[((bi * l + li) * h + hi) * dv..][..dv];
                for (c, &x) in vrow.iter().enumerate() {
                    vh[li * db + c / W][c % W] = x;
                }
            }
            for mi in 0..m {
                let qrow = &q[((bi * m + mi) * h + hi) * dq..][..dq];
                // scores, block by block: one accumulator block over the dq products
                let mut mx: Block = [f32::NEG_INFINITY; W];
                for (c, sb) in s.iter_mut().enumerate() {
                    let mut a: Block = [0.0; W];
                    for (j, &qj) in qrow.iter().enumerate() {
                        let kb = &kt[j * lb + c];
                        for i in 0..W {
                            a[i] = madd::<FMA>(qj, kb[i], a[i]);
                        }
                    }
                    for i in 0..W {
                        // padding lanes (beyond L) get -inf: weight 0
                        a[i] = if c * W + i < l {
                            a[i] * scale
                        } else {
                            f32::NEG_INFINITY
                        };
                        mx[i] = if a[i] > mx[i] { a[i] } else { mx[i] };
                    }
                    *sb = a;
                }
                let max = mx
                    .iter()
                    .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
                let mut sum: Block = [0.0; W];
                for sb in s.iter_mut() {
                    for i in 0..W {
                        sb[i] = exp_nonpositive::<FMA>(sb[i] - max);
                        sum[i] += sb[i];
                    }
                }
                let inv = 1.0 / sum.iter().sum::<f32>();
                // the weighted sum of the values, by the unnormalised weights; the sum is
                // divided once at the end
                if db == 1 {
                    let mut a: Block = [0.0; W];
                    for (li, vb) in vh.iter().enumerate() {
                        let w = s[li / W][li % W];
                        for i in 0..W {
                            a[i] = madd::<FMA>(w, vb[i], a[i]);
                        }
                    }
                    acc[0] = a;
                } else {
                    for a in acc.iter_mut() {
                        *a = [0.0; W];
                    }
                    for li in 0..l {
                        let w = s[li / W][li % W];
                        for (a, vb) in acc.iter_mut().zip(&vh[li * db..(li + 1) * db]) {
                            for i in 0..W {
                                a[i] = madd::<FMA>(w, vb[i], a[i]);
                            }
                        }
                    }
                }
                let o = &mut out[((bi * m + mi) * h + hi) * dv..][..dv];
                for (c, x) in o.iter_mut().enumerate() {
                    *x = acc[c / W][c % W] * inv;
                }
            }
        }
    }
}

/// `e^x` for `x <= 0` (a softmax's shifted scores): 0 below -87 (where `e^x` < 2^-125, and
/// the softmax weight is 0 to float32 next to the maximum's weight of 1), else
/// `2^n * e^r` with `n = round(x / ln 2)`, `r = x - n ln 2` in [-ln2/2, ln2/2] (ln 2 in two
/// parts, so `r` is exact to float32 but for one rounding), and `e^r` by its degree-7 Taylor
/// polynomial in Horner form. Branch-free, so the loops that call it vectorise; a NaN input
/// gives NaN.
///
/// Its relative error, to first order in `U = 2^-24`, for `|r| <= ln 2 / 2`:
/// - truncation: `|r|^8 / 8! / e^r` < 0.13 U;
/// - Horner: step `k` (`p_k = p_(k+1) r + 1/k!`) rounds its product and its sum (one rounding
///   with FMA), each error carried to the result times `|r|^k`; summed over the steps,
///   relative to `e^r`: at most 2.83 U over the range (without FMA; about half with);
/// - `r`'s rounding (`U |r|`), carried by `de^r/dr = e^r`: included in the 2.83;
/// - `2^n` and its product are exact (the result is a normal float32 for `x >= -87`).
///
/// Total < 3 U; the tests check 4 U (`EXP_MAX_REL_ERROR`).
#[inline(always)]
fn exp_nonpositive<const FMA: bool>(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 = LN2_HI + LN2_LO, LN2_HI with its low 12 bits zero so n * LN2_HI is exact for
    // |n| < 2^12
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // adding and subtracting 1.5 * 2^23 rounds to the nearest integer in float32
    const ROUND: f32 = 12_582_912.0;
    // (not `x.max(-87.0)`, which turns a NaN into -87)
    let xc = if x < -87.0 { -87.0 } else { x };
    let big = madd::<FMA>(xc, LOG2E, ROUND);
    let n = big - ROUND;
    // n as an integer, from the bits of `big` (1.5 * 2^23 + n: n sits in the low mantissa
    // bits), without a float-to-int conversion, which the compiler may not vectorise
    let ni = big.to_bits() as i32 - ROUND.to_bits() as i32;
    let r = madd::<FMA>(-n, LN2_LO, madd::<FMA>(-n, LN2_HI, xc));
    // 1 + r + r^2/2! + ... + r^7/7!, Horner
    let mut p = 1.0 / 5040.0;
    p = madd::<FMA>(p, r, 1.0 / 720.0);
    p = madd::<FMA>(p, r, 1.0 / 120.0);
    p = madd::<FMA>(p, r, 1.0 / 24.0);
    p = madd::<FMA>(p, r, 1.0 / 6.0);
    p = madd::<FMA>(p, r, 0.5);
    p = madd::<FMA>(p, r, 1.0);
    p = madd::<FMA>(p, r, 1.0);
    // 2^n for n in [-126, 0]: the exponent field directly
    let two_n = f32::from_bits(((ni + 127) as u32) << 23);
    let y = p * two_n;
    if x < -87.0 {
        0.0
    } else {
        y
    }
}

/// Test data: a xorshift64 stream of floats uniform in [-1, 1) from `seed` (the kernels'
/// tests, here and in `tract_norm`).
#[cfg(test)]
pub(super) fn uniform(mut seed: u64) -> impl FnMut() -> f32 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        ((seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_exp<const FMA: bool>() {
        const U: f64 = 1.0 / 16_777_216.0;
        let mut worst = 0f64;
        // every 61st float32 in [-87, 0] (about 18 million values), and the ends
        let lo = (-87.0f32).to_bits();
        let hi = (-0.0f32).to_bits();
        let mut bits = hi;
        let mut xs = vec![
            0.0f32,
            -0.0,
            -87.0,
            -86.999_99,
            -1e-30,
            -1.0,
            -0.5,
            -0.346_573_6,
        ];
        while bits <= lo {
            xs.push(f32::from_bits(bits));
            bits += 61;
        }
        for x in xs {
            let got = exp_nonpositive::<FMA>(x) as f64;
            let want = (x as f64).exp();
            let rel = (got - want).abs() / want;
            worst = worst.max(rel / U);
        }
        assert!(
            worst <= EXP_MAX_REL_ERROR as f64,
            "exp_nonpositive (fma {FMA}): worst relative error {worst:.2} U > {EXP_MAX_REL_ERROR} U"
        );
    }

    #[test]
    fn exp_error_is_within_its_bound() {
        check_exp::<false>();
        // mul_add computes a * b + c with one rounding on every target (in software where
        // the CPU has no FMA), so this checks the FMA form's arithmetic everywhere
        check_exp::<true>();
    }

    /// The AVX2 `exp` gives the scalar FMA build's results bit for bit, so the scalar's
    /// checked error bound covers it.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_exp_is_the_scalar_exp() {
        if !available() {
            eprintln!("no AVX2 and FMA on this CPU: the AVX2 kernel is not used here");
            return;
        }
        let mut xs: Vec<f32> = vec![
            0.0,
            -0.0,
            -87.0,
            -87.5,
            -1e9,
            f32::NEG_INFINITY,
            -0.346_573_6,
        ];
        let mut bits = (-0.0f32).to_bits();
        while bits <= (-88.0f32).to_bits() {
            xs.push(f32::from_bits(bits));
            bits += 997;
        }
        while !xs.len().is_multiple_of(8) {
            xs.push(-1.0);
        }
        let mut got = vec![0f32; xs.len()];
        for (x, g) in xs.chunks_exact(8).zip(got.chunks_exact_mut(8)) {
            #[allow(unsafe_code)]
            // SAFETY: the CPU has AVX2 and FMA (checked above); the pointers cover 8 floats.
            unsafe {
                use std::arch::x86_64::{_mm256_loadu_ps, _mm256_storeu_ps};
                _mm256_storeu_ps(g.as_mut_ptr(), avx2::exp8(_mm256_loadu_ps(x.as_ptr())));
            }
        }
        for (x, g) in xs.iter().zip(&got) {
            let want = exp_nonpositive::<true>(*x);
            assert_eq!(
                g.to_bits(),
                want.to_bits(),
                "exp({x}): avx2 {g}, scalar {want}"
            );
        }
    }

    /// Keys padded as the exporter's graphs pad them (mask column -1e9 / scale, zero values)
    /// change nothing, bit for bit: the AVX2 kernel puts each key in the same lane and partial
    /// sum whatever L is, and a padded key adds exact zeros.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_padding_changes_no_bit() {
        if !available() {
            eprintln!("no AVX2 and FMA on this CPU: the AVX2 kernel is not used here");
            return;
        }
        let (m, h, dq, dv, scale) = (9, 3, 17, 16, 0.25f32);
        let mut x = 0x9e37_79b9u32;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
        };
        let mut q: Vec<f32> = (0..m * h * dq).map(|_| rnd()).collect();
        for row in q.chunks_mut(dq) {
            row[dq - 1] = 1.0;
        }
        let (l, lpad) = (50, 64);
        let mut k = vec![0f32; lpad * h * dq];
        let mut v = vec![0f32; lpad * h * dv];
        for li in 0..lpad {
            for hi in 0..h {
                let kr = &mut k[(li * h + hi) * dq..][..dq];
                for x in kr.iter_mut() {
                    *x = rnd().abs();
                }
                kr[dq - 1] = if li < l { 0.0 } else { -1e9 / scale };
                if li < l {
                    for x in &mut v[(li * h + hi) * dv..][..dv] {
                        *x = rnd();
                    }
                }
            }
        }
        let run = |l: usize| {
            let d = Dims {
                b: 1,
                m,
                h,
                dq,
                l,
                dv,
            };
            let mut out = vec![0f32; m * h * dv];
            attend(d, scale, &q, &k[..l * h * dq], &v[..l * h * dv], &mut out);
            out
        };
        let (short, padded) = (run(l), run(lpad));
        for (i, (a, b)) in short.iter().zip(&padded).enumerate() {
            assert_eq!(
                a.to_bits(),
                b.to_bits(),
                "output {i}: L {l} gives {a}, padded {b}"
            );
        }
    }

    #[test]
    fn exp_edges() {
        assert_eq!(exp_nonpositive::<false>(0.0), 1.0);
        assert_eq!(exp_nonpositive::<false>(-87.5), 0.0);
        assert_eq!(exp_nonpositive::<false>(-1e9), 0.0);
        assert_eq!(exp_nonpositive::<false>(f32::NEG_INFINITY), 0.0);
        assert!(exp_nonpositive::<false>(f32::NAN).is_nan());
    }

    /// The kernel against a direct f64 evaluation of the same formula, on random shapes and
    /// values, with masked keys as the exporter's graphs make them (a score of -1e9).
    #[test]
    fn kernel_matches_f64_reference() {
        let mut rnd = uniform(0x2545_f491_4f6c_dd1d);
        for &(b, m, h, dq, l, dv, masked) in &[
            (1, 7, 2, 5, 9, 4, 0),
            (2, 33, 4, 17, 50, 16, 13),
            (1, 3, 1, 1, 1, 1, 0),
            (1, 5, 3, 9, 64, 8, 64),
            (1, 4, 2, 5, 20, 24, 3),
            (1, 2, 2, 3, 0, 4, 0),
        ] {
            let d = Dims { b, m, h, dq, l, dv };
            let scale = 0.25f32;
            let q: Vec<f32> = (0..b * m * h * dq).map(|_| rnd() * 3.0).collect();
            let mut k: Vec<f32> = (0..b * l * h * dq).map(|_| rnd() * 3.0).collect();
            let mut v: Vec<f32> = (0..b * l * h * dv).map(|_| rnd()).collect();
            // the last `masked` keys of every batch item are padding: their last column is
            // -1e9 / scale against a query column of 1 (the exporter's mask column)
            let mut q = q;
            for x in q.chunks_mut(dq) {
                x[dq - 1] = 1.0;
            }
            for bi in 0..b {
                for li in 0..l {
                    for hi in 0..h {
                        let at = ((bi * l + li) * h + hi) * dq + dq - 1;
                        k[at] = if li >= l - masked { -1e9 / scale } else { 0.0 };
                        if li >= l - masked {
                            // the exporter zeroes padding's values
                            v[((bi * l + li) * h + hi) * dv..][..dv].fill(0.0);
                        }
                    }
                }
            }
            let mut dispatched = vec![0f32; b * m * h * dv];
            attend(d, scale, &q, &k, &v, &mut dispatched);
            let mut portable = vec![0f32; b * m * h * dv];
            attend_with::<false>(d, scale, &q, &k, &v, &mut portable);
            for out in [&dispatched, &portable] {
                for bi in 0..b {
                    for hi in 0..h {
                        for mi in 0..m {
                            let qi = ((bi * m + mi) * h + hi) * dq;
                            let s: Vec<f64> = (0..l)
                                .map(|li| {
                                    let ki = ((bi * l + li) * h + hi) * dq;
                                    (0..dq)
                                        .map(|j| q[qi + j] as f64 * k[ki + j] as f64)
                                        .sum::<f64>()
                                        * scale as f64
                                })
                                .collect();
                            let max = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                            let e: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
                            let sum: f64 = e.iter().sum();
                            for di in 0..dv {
                                let (mut want, mut mag) = (0f64, 0f64);
                                for li in 0..l {
                                    let x = v[((bi * l + li) * h + hi) * dv + di] as f64;
                                    want += e[li] / sum * x;
                                    mag += (e[li] / sum * x).abs();
                                }
                                let got = out[((bi * m + mi) * h + hi) * dv + di] as f64;
                                // the score's error (dq + 1 roundings of terms up to |q||k|,
                                // through exp: relative error of every weight up to that times
                                // the score magnitude) plus the softmax's and the sum's own
                                // (exp, division, l-term sums): first order, generous
                                let smag: f64 = (0..l)
                                    .map(|li| {
                                        let ki = ((bi * l + li) * h + hi) * dq;
                                        (0..dq - 1)
                                            .map(|j| (q[qi + j] as f64 * k[ki + j] as f64).abs())
                                            .sum::<f64>()
                                            * scale as f64
                                    })
                                    .fold(0.0, f64::max);
                                let u = 1.0 / 16_777_216.0;
                                let rel = 2.0 * (dq as f64 + 1.0) * u * smag
                                    + (EXP_MAX_REL_ERROR as f64 + 2.0 * l as f64 + 3.0) * u;
                                let tol =
                                    rel * mag + (l as f64 + 1.0) * u * mag + f64::MIN_POSITIVE;
                                assert!(
                                (got - want).abs() <= tol,
                                "shape {d:?} b{bi} h{hi} m{mi} d{di}: {got} vs {want} (tol {tol:e})"
                            );
                            }
                        }
                    }
                }
            }
        }
    }
}
