//! Resize's host half (opsets 10-19): the node's attributes and its constant `scales` or
//! `sizes` become the NVRTC kernel's settings, output shape and per-axis scales, derived as
//! kiln-reference derives them (scales: `out = floor(scale * in)`; sizes: `scale = out / in`,
//! `keep_aspect_ratio_policy` included; `axes` from opset 18). What the kernel does not offer
//! is an error naming it: `cubic` mode, `tf_crop_and_resize`, and `antialias` on a linear
//! axis that shrinks. The builder runs the same derivation on the specialised graph's
//! initialisers, so such nodes fail the build (`builder::checks`).

use kiln_onnx::{Node, Tensor};

use super::node_err;
use crate::error::Result;
use crate::kernels::nvrtc::layout;
use crate::kernels::nvrtc::resize::{CoordMode, NearestMode, ResizeMode, ResizeSettings};

/// What one Resize launch takes.
#[derive(Debug, Clone, PartialEq)]
pub struct ResizePlan {
    pub settings: ResizeSettings,
    pub out_shape: Vec<usize>,
    /// One per axis (1.0 where the axis is not resized).
    pub scales: Vec<f64>,
}

/// Input positions of (`scales`, `sizes`) at `opset` (opset 10 has no `sizes`).
pub fn resize_inputs(opset: i64) -> (usize, Option<usize>) {
    if opset < 11 { (1, None) } else { (2, Some(3)) }
}

/// The plan of a Resize of `in_shape`; `input(i)` gives input `i` when it is a constant
/// (`Ok(None)`: omitted). An empty tensor counts as omitted, as in the reference.
pub fn resize_plan<'a>(
    node: &Node,
    opset: i64,
    in_shape: &[usize],
    input: impl Fn(usize) -> Result<Option<&'a Tensor>>,
) -> Result<ResizePlan> {
    let err = |m: String| node_err(node, m);
    let attr_s = |n: &str, d: &str| -> Result<String> {
        Ok(node
            .attr_string(n)
            .map_err(|e| node_err(node, e))?
            .unwrap_or_else(|| d.to_string()))
    };
    let attr_i = |n: &str| -> Result<i64> {
        Ok(node
            .attr_int(n)
            .map_err(|e| node_err(node, e))?
            .unwrap_or(0))
    };
    let old = opset < 11;
    let mode = match attr_s("mode", "nearest")?.as_str() {
        "nearest" => ResizeMode::Nearest,
        "linear" | "bilinear" | "trilinear" => ResizeMode::Linear,
        m @ ("cubic" | "bicubic") => {
            return Err(err(format!(
                "mode '{m}' has no GPU kernel (nearest and linear only); use linear or nearest \
                 in the model"
            )));
        }
        other => return Err(err(format!("mode '{other}' is unknown"))),
    };
    let coord = if old {
        CoordMode::Asymmetric
    } else {
        match attr_s("coordinate_transformation_mode", "half_pixel")?.as_str() {
            "half_pixel" => CoordMode::HalfPixel,
            "pytorch_half_pixel" => CoordMode::PytorchHalfPixel,
            "align_corners" => CoordMode::AlignCorners,
            "asymmetric" => CoordMode::Asymmetric,
            "half_pixel_symmetric" => CoordMode::HalfPixelSymmetric,
            "tf_crop_and_resize" => {
                return Err(err(
                    "coordinate_transformation_mode 'tf_crop_and_resize' has no GPU kernel; \
                     use another coordinate mode"
                        .into(),
                ));
            }
            other => return Err(err(format!("coordinate mode '{other}' is unknown"))),
        }
    };
    let nearest = if old {
        NearestMode::Floor
    } else {
        match attr_s("nearest_mode", "round_prefer_floor")?.as_str() {
            "round_prefer_floor" => NearestMode::RoundPreferFloor,
            "round_prefer_ceil" => NearestMode::RoundPreferCeil,
            "floor" => NearestMode::Floor,
            "ceil" => NearestMode::Ceil,
            other => return Err(err(format!("nearest_mode '{other}' is unknown"))),
        }
    };
    let rank = in_shape.len();
    let axes: Vec<usize> = match node.attr_ints("axes").map_err(|e| node_err(node, e))? {
        Some(v) if opset >= 18 => v
            .iter()
            .map(|&a| layout::norm_axis(a, rank, "resize").map_err(|e| node_err(node, e)))
            .collect::<Result<_>>()?,
        _ => (0..rank).collect(),
    };
    let present = |i: usize| -> Result<Option<&'a Tensor>> {
        Ok(input(i)?.filter(|t| t.dims().iter().product::<usize>() > 0))
    };
    let (si, zi) = resize_inputs(opset);
    let scales = present(si)?
        .map(|t| t.to_f32_vec().map_err(|e| node_err(node, e)))
        .transpose()?;
    let sizes = match zi {
        Some(i) => present(i)?
            .map(|t| t.to_i64_vec().map_err(|e| node_err(node, e)))
            .transpose()?,
        None => None,
    };
    let n = axes.len();
    let mut scale = vec![1.0f64; rank];
    let mut out = in_shape.to_vec();
    match (scales, sizes) {
        (Some(sc), None) => {
            if sc.len() != n {
                return Err(err(format!("{} scales for {n} axes", sc.len())));
            }
            for (&s, &ax) in sc.iter().zip(&axes) {
                let s = f64::from(s);
                if s.is_nan() || s <= 0.0 {
                    return Err(err(format!("scale {s} is not positive")));
                }
                let o = (s * in_shape[ax] as f64).floor();
                if o > (1u64 << 32) as f64 {
                    return Err(err("the output is too large".into()));
                }
                scale[ax] = s;
                out[ax] = o as usize;
            }
        }
        (None, Some(sz)) => {
            if sz.len() != n {
                return Err(err(format!("{} sizes for {n} axes", sz.len())));
            }
            for (&o, &ax) in sz.iter().zip(&axes) {
                let o = usize::try_from(o)
                    .ok()
                    .filter(|&o| o <= 1 << 32)
                    .ok_or_else(|| err(format!("size {o} is invalid")))?;
                out[ax] = o;
                scale[ax] = o as f64 / in_shape[ax].max(1) as f64;
            }
            let policy = attr_s("keep_aspect_ratio_policy", "stretch")?;
            if policy != "stretch" {
                let pick = axes.iter().map(|&ax| scale[ax]);
                let s = match policy.as_str() {
                    "not_larger" => pick.fold(f64::INFINITY, f64::min),
                    "not_smaller" => pick.fold(0.0, f64::max),
                    other => {
                        return Err(err(format!(
                            "keep_aspect_ratio_policy '{other}' is unknown"
                        )));
                    }
                };
                for &ax in &axes {
                    scale[ax] = s;
                    out[ax] = (s * in_shape[ax] as f64 + 0.5) as usize;
                }
            }
        }
        (Some(_), Some(_)) => return Err(err("both scales and sizes are given".into())),
        (None, None) => return Err(err("neither scales nor sizes is given".into())),
    }
    if mode == ResizeMode::Linear && attr_i("antialias")? != 0 && scale.iter().any(|&s| s < 1.0) {
        return Err(err(
            "antialias when a linear axis shrinks has no GPU kernel; drop antialias or resize \
             up only"
                .into(),
        ));
    }
    if let Some(ax) = (0..rank).find(|&a| in_shape[a] == 0 && out[a] != 0) {
        return Err(err(format!("axis {ax} is empty")));
    }
    Ok(ResizePlan {
        settings: ResizeSettings {
            mode,
            coord,
            nearest,
            exclude_outside: attr_i("exclude_outside")? != 0,
        },
        out_shape: out,
        scales: scale,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_onnx::{AttrValue, Attribute};

    fn node(attrs: &[(&str, AttrValue)]) -> Node {
        Node {
            name: "rs".into(),
            op_type: "Resize".into(),
            attributes: attrs
                .iter()
                .map(|(n, v)| Attribute::new(*n, v.clone()))
                .collect(),
            ..Node::default()
        }
    }

    fn s(v: &str) -> AttrValue {
        AttrValue::String(v.into())
    }

    fn plan(n: &Node, opset: i64, x: &[usize], inputs: &[(usize, Tensor)]) -> Result<ResizePlan> {
        resize_plan(n, opset, x, |i| {
            Ok(inputs.iter().find(|(k, _)| *k == i).map(|(_, t)| t))
        })
    }

    fn f32s(v: &[f32]) -> Tensor {
        Tensor::from_vec("s", vec![v.len()], v.to_vec()).unwrap()
    }

    fn i64s(v: &[i64]) -> Tensor {
        Tensor::from_vec("z", vec![v.len()], v.to_vec()).unwrap()
    }

    #[test]
    fn scales_and_sizes_as_the_reference() {
        let n = node(&[("mode", s("linear"))]);
        let p = plan(&n, 13, &[1, 2, 5, 7], &[(2, f32s(&[1.0, 1.0, 2.0, 1.5]))]).unwrap();
        assert_eq!(p.out_shape, vec![1, 2, 10, 10]);
        assert_eq!(p.scales, vec![1.0, 1.0, 2.0, 1.5]);
        assert_eq!(p.settings.mode, ResizeMode::Linear);
        assert_eq!(p.settings.coord, CoordMode::HalfPixel);
        // an empty scales tensor counts as omitted: sizes decide
        let p = plan(
            &n,
            13,
            &[1, 2, 5, 7],
            &[(2, f32s(&[])), (3, i64s(&[1, 2, 3, 14]))],
        )
        .unwrap();
        assert_eq!(p.out_shape, vec![1, 2, 3, 14]);
        assert_eq!(p.scales[2], 0.6);
        assert_eq!(p.scales[3], 2.0);
        // opset 10: input 1 is scales, asymmetric coordinates, nearest rounds down
        let p = plan(&node(&[]), 10, &[2, 4], &[(1, f32s(&[1.0, 0.5]))]).unwrap();
        assert_eq!(p.out_shape, vec![2, 2]);
        assert_eq!(
            (p.settings.coord, p.settings.nearest),
            (CoordMode::Asymmetric, NearestMode::Floor)
        );
        // opset 18: axes and keep_aspect_ratio_policy
        let n = node(&[
            ("axes", AttrValue::Ints(vec![-2, -1])),
            ("keep_aspect_ratio_policy", s("not_larger")),
        ]);
        let p = plan(&n, 18, &[1, 3, 4, 8], &[(3, i64s(&[8, 8]))]).unwrap();
        assert_eq!(p.out_shape, vec![1, 3, 4, 8]);
        assert_eq!(p.scales, vec![1.0, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn what_the_kernel_lacks_is_named() {
        let x = [1usize, 1, 4, 4];
        let up = [(2, f32s(&[1.0, 1.0, 2.0, 2.0]))];
        let down = [(2, f32s(&[1.0, 1.0, 0.5, 0.5]))];
        let e = |attrs: &[(&str, AttrValue)], ins: &[(usize, Tensor)]| {
            plan(&node(attrs), 19, &x, ins).unwrap_err().to_string()
        };
        assert!(e(&[("mode", s("cubic"))], &up).contains("'cubic'"));
        assert!(
            e(
                &[("coordinate_transformation_mode", s("tf_crop_and_resize"))],
                &up
            )
            .contains("tf_crop_and_resize")
        );
        let aa = [("mode", s("linear")), ("antialias", AttrValue::Int(1))];
        assert!(e(&aa, &down).contains("antialias"));
        plan(&node(&aa), 19, &x, &up).unwrap();
        assert!(e(&[], &[]).contains("neither"));
        assert!(e(&[], &[(2, f32s(&[1.0, 2.0]))]).contains("2 scales for 4 axes"));
        assert!(e(&[], &[(2, f32s(&[1.0, 1.0, 0.0, 1.0]))]).contains("not positive"));
        let both = [(2, f32s(&[1.0, 1.0, 2.0, 2.0])), (3, i64s(&[1, 1, 8, 8]))];
        assert!(e(&[], &both).contains("both"));
        assert!(e(&[("mode", s("area"))], &up).contains("'area'"));
    }
}
