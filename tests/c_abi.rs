//! The golden suite through the C ABI: opens the built cdylib with libloading (as tract's
//! api/proxy tests do) and drives it exactly as a C caller would. Also checks the header's
//! version macros against Cargo.toml.

mod common;

use std::ffi::{c_char, CStr, CString};
use std::path::PathBuf;
use std::ptr;

use libloading::{Library, Symbol};

#[repr(C)]
struct CBehavior {
    item: *const c_char,
    category: *const c_char,
    action: *const c_char,
    timestamp: i64,
    group: *const c_char,
    features: *const CFeature,
    features_len: usize,
}

#[repr(C)]
struct CFeature {
    name: *const c_char,
    value: *const c_char,
}

impl CBehavior {
    fn empty() -> CBehavior {
        CBehavior {
            item: ptr::null(),
            category: ptr::null(),
            action: ptr::null(),
            timestamp: 0,
            group: ptr::null(),
            features: ptr::null(),
            features_len: 0,
        }
    }
}

enum CModel {}
enum CError {}

type LoadFn = unsafe extern "C" fn(*const c_char, u32, *mut *const CModel) -> *mut CError;
type ScoreFn = unsafe extern "C" fn(
    *const CModel,
    *const CBehavior,
    usize,
    *const *const c_char,
    usize,
    i64,
    *mut f32,
    usize,
) -> *mut CError;
type FreeModelFn = unsafe extern "C" fn(*const CModel);
type CodeFn = unsafe extern "C" fn(*const CError) -> u32;
type MessageFn = unsafe extern "C" fn(*const CError) -> *const c_char;
type FreeErrorFn = unsafe extern "C" fn(*mut CError);

fn cdylib_path() -> PathBuf {
    // Integration tests live in target/<profile>/deps; the cdylib in target/<profile>.
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    dir.join(format!(
        "{}atrank{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ))
}

struct Api {
    _lib: Library,
    load: LoadFn,
    score: ScoreFn,
    free_model: FreeModelFn,
    code: CodeFn,
    message: MessageFn,
    free_error: FreeErrorFn,
}

impl Api {
    fn open() -> Api {
        let path = cdylib_path();
        // SAFETY: the library is atrank's own cdylib; its initialisers are Rust statics only.
        let lib = unsafe { Library::new(&path) }.unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run `cargo build` first: `cargo test` does not build the cdylib)",
                path.display()
            )
        });
        // SAFETY: the symbol types match capi/include/atrank.h.
        unsafe {
            let load: Symbol<'_, LoadFn> = lib.get(b"atrank_model_load").unwrap();
            let score: Symbol<'_, ScoreFn> = lib.get(b"atrank_model_score").unwrap();
            let free_model: Symbol<'_, FreeModelFn> = lib.get(b"atrank_model_free").unwrap();
            let code: Symbol<'_, CodeFn> = lib.get(b"atrank_error_code").unwrap();
            let message: Symbol<'_, MessageFn> = lib.get(b"atrank_error_message").unwrap();
            let free_error: Symbol<'_, FreeErrorFn> = lib.get(b"atrank_error_free").unwrap();
            Api {
                load: *load,
                score: *score,
                free_model: *free_model,
                code: *code,
                message: *message,
                free_error: *free_error,
                _lib: lib,
            }
        }
    }

    /// Consumes an error, returning (code, message); (0, "") for NULL.
    fn take_error(&self, e: *mut CError) -> (u32, String) {
        // SAFETY: `e` is NULL or an error from this library, freed exactly once here.
        unsafe {
            let out = (
                (self.code)(e),
                CStr::from_ptr((self.message)(e))
                    .to_string_lossy()
                    .into_owned(),
            );
            (self.free_error)(e);
            out
        }
    }
}

/// A behavior's C strings: id, category, action, group.
type BehaviorStrings = (CString, Option<CString>, Option<CString>, Option<CString>);

fn run_backend(api: &Api, backend: u32, label: &str) {
    // Every package: the behaviors' groups and features go through atrank_behavior's `group`
    // and `features` (format 3 has any number of groups).
    let packages = common::packages();
    assert!(packages.len() >= 2, "the two fixtures at least");
    for pkg in packages {
        let dir = CString::new(pkg.to_str().unwrap()).unwrap();
        let mut model: *const CModel = ptr::null();
        // SAFETY: valid C string and out-pointer.
        let err = unsafe { (api.load)(dir.as_ptr(), backend, &mut model) };
        let (code, msg) = api.take_error(err);
        assert_eq!(code, 0, "{label}: load {}: {msg}", pkg.display());
        assert!(!model.is_null());
        common::check_golden(&pkg, label, |req| {
            let cstr = |s: &str| CString::new(s).unwrap();
            let strings: Vec<BehaviorStrings> = req
                .behaviors
                .iter()
                .map(|b| {
                    (
                        cstr(&b.id),
                        b.category.as_deref().map(cstr),
                        b.action.as_deref().map(cstr),
                        b.group.as_deref().map(cstr),
                    )
                })
                .collect();
            let feature_strings: Vec<Vec<(CString, CString)>> = req
                .behaviors
                .iter()
                .map(|b| b.features.iter().map(|(k, v)| (cstr(k), cstr(v))).collect())
                .collect();
            let features: Vec<Vec<CFeature>> = feature_strings
                .iter()
                .map(|fs| {
                    fs.iter()
                        .map(|(k, v)| CFeature {
                            name: k.as_ptr(),
                            value: v.as_ptr(),
                        })
                        .collect()
                })
                .collect();
            let behaviors: Vec<CBehavior> = strings
                .iter()
                .zip(&req.behaviors)
                .zip(&features)
                .map(|(((i, c, a, g), b), f)| CBehavior {
                    item: i.as_ptr(),
                    category: c.as_ref().map_or(ptr::null(), |c| c.as_ptr()),
                    action: a.as_ref().map_or(ptr::null(), |a| a.as_ptr()),
                    timestamp: b.timestamp,
                    group: g.as_ref().map_or(ptr::null(), |g| g.as_ptr()),
                    features: if f.is_empty() {
                        ptr::null()
                    } else {
                        f.as_ptr()
                    },
                    features_len: f.len(),
                })
                .collect();
            let cands: Vec<CString> = req
                .candidates
                .iter()
                .map(|c| CString::new(c.as_str()).unwrap())
                .collect();
            let cand_ptrs: Vec<*const c_char> = cands.iter().map(|c| c.as_ptr()).collect();
            let mut out = vec![f32::NAN; cand_ptrs.len()];
            // SAFETY: every pointer is valid for the call; lengths match the buffers.
            let err = unsafe {
                (api.score)(
                    model,
                    if behaviors.is_empty() {
                        ptr::null()
                    } else {
                        behaviors.as_ptr()
                    },
                    behaviors.len(),
                    cand_ptrs.as_ptr(),
                    cand_ptrs.len(),
                    req.request_time,
                    out.as_mut_ptr(),
                    out.len(),
                )
            };
            let (code, msg) = api.take_error(err);
            assert_eq!(code, 0, "{label} {}: {msg}", req.name);
            out
        });
        // SAFETY: a live handle, freed once.
        unsafe { (api.free_model)(model) };
    }
}

#[test]
fn golden_through_the_c_abi() {
    let api = Api::open();
    run_backend(&api, 1, "c-abi/tract");
    // The cdylib reads ATRANK_ORT_LIB itself (it has its own copy of the ort crate).
    if common::ort_library().is_some() {
        run_backend(&api, 0, "c-abi/ort");
    }
}

#[test]
fn c_abi_errors_carry_codes_and_name_the_argument() {
    let api = Api::open();
    let mut model: *const CModel = ptr::null();
    // SAFETY: NULL path on purpose; out-pointer valid.
    let (code, msg) = api.take_error(unsafe { (api.load)(ptr::null(), 1, &mut model) });
    assert_eq!((code, msg.as_str()), (1, "package_dir is NULL"));
    assert!(model.is_null(), "out-param untouched on error");
    let dir = CString::new(common::packages()[0].to_str().unwrap()).unwrap();
    // SAFETY: valid arguments except the backend value.
    let (code, msg) = api.take_error(unsafe { (api.load)(dir.as_ptr(), 42, &mut model) });
    assert_eq!(code, 2, "{msg}");
    assert!(msg.contains("backend 42"), "{msg}");
    // SAFETY: valid arguments.
    let (code, msg) = api.take_error(unsafe { (api.load)(dir.as_ptr(), 1, &mut model) });
    assert_eq!(code, 0, "{msg}");
    let item = CString::new("x").unwrap();
    let behaviors = [
        CBehavior {
            item: item.as_ptr(),
            ..CBehavior::empty()
        },
        CBehavior {
            item: ptr::null(),
            ..CBehavior::empty()
        },
    ];
    let cand = [item.as_ptr()];
    let mut out = [7.0f32; 1];
    // SAFETY: behaviors[1].item is NULL on purpose; everything else valid.
    let (code, msg) = api.take_error(unsafe {
        (api.score)(
            model,
            behaviors.as_ptr(),
            2,
            cand.as_ptr(),
            1,
            0,
            out.as_mut_ptr(),
            1,
        )
    });
    assert_eq!((code, msg.as_str()), (1, "behaviors[1].item is NULL"));
    assert_eq!(out[0], 7.0, "scores_out untouched on error");
    let bad = [c"\xff\xfe".as_ptr()];
    // SAFETY: invalid UTF-8 on purpose, NUL-terminated.
    let (code, msg) = api.take_error(unsafe {
        (api.score)(
            model,
            ptr::null(),
            0,
            bad.as_ptr(),
            1,
            0,
            out.as_mut_ptr(),
            1,
        )
    });
    assert_eq!(
        (code, msg.as_str()),
        (3, "candidates[0] is not valid UTF-8")
    );
    // SAFETY: output length disagrees on purpose.
    let (code, msg) = api.take_error(unsafe {
        (api.score)(
            model,
            ptr::null(),
            0,
            cand.as_ptr(),
            1,
            0,
            out.as_mut_ptr(),
            2,
        )
    });
    assert_eq!(code, 9, "{msg}");
    // SAFETY: NULL behaviors with a non-zero length on purpose.
    let (code, msg) = api.take_error(unsafe {
        (api.score)(
            model,
            ptr::null(),
            3,
            cand.as_ptr(),
            1,
            0,
            out.as_mut_ptr(),
            1,
        )
    });
    assert_eq!(code, 1, "{msg}");
    assert!(msg.contains("behaviors"), "{msg}");
    // A misaligned array pointer is refused, not read (it would be undefined behaviour).
    let misaligned = behaviors
        .as_ptr()
        .cast::<u8>()
        .wrapping_add(1)
        .cast::<CBehavior>();
    // SAFETY: the pointer is misaligned on purpose; atrank must check before reading.
    let (code, msg) = api.take_error(unsafe {
        (api.score)(
            model,
            misaligned,
            1,
            cand.as_ptr(),
            1,
            0,
            out.as_mut_ptr(),
            1,
        )
    });
    assert_eq!(code, 2, "{msg}");
    assert!(msg.contains("behaviors is not aligned"), "{msg}");
    // SAFETY: empty history is valid.
    let (code, msg) = api.take_error(unsafe {
        (api.score)(
            model,
            ptr::null(),
            0,
            cand.as_ptr(),
            1,
            0,
            out.as_mut_ptr(),
            1,
        )
    });
    assert_eq!(code, 0, "{msg}");
    assert!(out[0].is_finite());
    // SAFETY: live handle freed once; NULL free is a no-op.
    unsafe {
        (api.free_model)(model);
        (api.free_model)(ptr::null());
        (api.free_error)(ptr::null_mut());
    }
}

#[test]
fn header_version_macros_match_cargo_toml() {
    let header = std::fs::read_to_string(common::repo().join("capi/include/atrank.h")).unwrap();
    let mac = |name: &str| -> String {
        let prefix = format!("#define {name} ");
        header
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("{name} missing from capi/include/atrank.h"))
            .trim()
            .to_owned()
    };
    assert_eq!(mac("ATRANK_VERSION_MAJOR"), env!("CARGO_PKG_VERSION_MAJOR"));
    assert_eq!(mac("ATRANK_VERSION_MINOR"), env!("CARGO_PKG_VERSION_MINOR"));
    assert_eq!(mac("ATRANK_VERSION_PATCH"), env!("CARGO_PKG_VERSION_PATCH"));
    assert_eq!(
        mac("ATRANK_ABI_VERSION"),
        atrank::ffi::ABI_VERSION.to_string()
    );
}
