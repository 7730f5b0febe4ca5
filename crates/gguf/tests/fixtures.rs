//! Compares the parser and dequantizer with fixtures made by the PyPI `gguf` package
//! (scripts/gguf_make_fixtures.py): tensor infos as read by gguf.GGUFReader, values from gguf.quants.dequantize.

mod common;

use burrow_gguf::{dequantize, dequantize_to_vec, GgmlType, Gguf, HeaderReader, Value};
use common::{manifest, read_fixture};
use serde_json::Value as Json;

fn json_to_value(j: &Json) -> Value {
    let v = &j["v"];
    let int = || v.as_i64().map(i128::from).or(v.as_u64().map(i128::from)).expect("integer");
    match j["t"].as_str().expect("type name") {
        "UINT8" => Value::U8(int() as u8),
        "INT8" => Value::I8(int() as i8),
        "UINT16" => Value::U16(int() as u16),
        "INT16" => Value::I16(int() as i16),
        "UINT32" => Value::U32(int() as u32),
        "INT32" => Value::I32(int() as i32),
        "UINT64" => Value::U64(int() as u64),
        "INT64" => Value::I64(int() as i64),
        // The manifest holds the exact f32 as an f64, so narrowing is exact.
        "FLOAT32" => Value::F32(v.as_f64().expect("float") as f32),
        "FLOAT64" => Value::F64(v.as_f64().expect("float")),
        "BOOL" => Value::Bool(v.as_bool().expect("bool")),
        "STRING" => Value::String(v.as_str().expect("string").to_owned()),
        "ARRAY" => Value::Array(v.as_array().expect("array").iter().map(json_to_value).collect()),
        other => panic!("unknown type {other}"),
    }
}

fn files() -> Vec<Json> {
    manifest()["files"].as_array().expect("files").clone()
}

fn read_f32s(name: &str) -> Vec<f32> {
    read_fixture(name).chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = if w.is_nan() {
            g.is_nan()
        } else {
            g == w || (g - w).abs() <= 1e-6 * w.abs()
        };
        assert!(ok, "{what}: element {i}: got {g:e}, expected {w:e}");
    }
}

#[test]
fn every_dequantizable_type_has_a_fixture() {
    let covered: Vec<String> = files().iter().map(|f| f["type"].as_str().unwrap().to_owned()).collect();
    for ty in GgmlType::ALL.iter().filter(|t| t.can_dequantize()) {
        assert!(covered.iter().any(|c| c == ty.name()), "no fixture for {ty}");
    }
}

#[test]
fn tensor_infos_match_gguf_py() {
    for f in files() {
        let name = f["file"].as_str().unwrap();
        let bytes = read_fixture(name);
        assert_eq!(bytes.len() as u64, f["size"].as_u64().unwrap(), "{name} size");
        let g = Gguf::parse(&bytes, bytes.len() as u64).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(g.version, f["version"].as_u64().unwrap() as u32, "{name}");
        assert_eq!(g.alignment, f["alignment"].as_u64().unwrap(), "{name}");
        assert_eq!(g.data_offset, f["data_offset"].as_u64().unwrap(), "{name}");
        let want = f["tensors"].as_array().unwrap();
        assert_eq!(g.tensors.len(), want.len(), "{name} tensor count");
        for (t, w) in g.tensors.iter().zip(want) {
            assert_eq!(t.name, w["name"].as_str().unwrap());
            assert_eq!(t.ty.name(), w["type"].as_str().unwrap(), "{name}/{}", t.name);
            let dims: Vec<u64> = w["dims"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).collect();
            assert_eq!(t.dims, dims, "{name}/{}", t.name);
            assert_eq!(t.offset, w["offset"].as_u64().unwrap(), "{name}/{}", t.name);
            assert_eq!(t.n_elements, w["n_elements"].as_u64().unwrap(), "{name}/{}", t.name);
            assert_eq!(t.n_bytes, w["n_bytes"].as_u64().unwrap(), "{name}/{}", t.name);
            assert_eq!(g.tensor(&t.name), Some(t));
        }
    }
}

#[test]
fn metadata_of_every_type_reads_back() {
    let m = manifest();
    let arch = m["architecture"].as_str().unwrap();
    let written: Vec<(String, Value)> = m["metadata"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| (kv[0].as_str().unwrap().to_owned(), json_to_value(&kv[1])))
        .collect();
    for f in files() {
        let name = f["file"].as_str().unwrap();
        let bytes = read_fixture(name);
        let g = Gguf::parse(&bytes, bytes.len() as u64).unwrap();
        assert_eq!(g.architecture(), Some(arch), "{name}");
        // GGUFWriter adds general.architecture (and general.alignment when set) before our keys, in order.
        let ours: Vec<&(String, Value)> = g.metadata.iter().filter(|(k, _)| !k.starts_with("general.")).collect();
        assert_eq!(ours.len(), written.len(), "{name}: key count");
        for ((k, v), (wk, wv)) in ours.into_iter().zip(&written) {
            assert_eq!(k, wk, "{name}: key order");
            assert_eq!(v, wv, "{name}: value of {k}");
            assert_eq!(g.get(k), Some(wv));
        }
    }
    let bytes = read_fixture("q8_0.gguf");
    let g = Gguf::parse(&bytes, bytes.len() as u64).unwrap();
    assert_eq!(g.get_u64("general.alignment"), Some(64));
    assert_eq!(g.get_u64("test.u64"), Some(u64::MAX));
    assert_eq!(g.get_u64("test.i8"), None);
    assert_eq!(g.get("test.i64").and_then(Value::as_i64), Some(i64::MIN));
    assert_eq!(g.get_f32("test.f32"), Some(0.1));
    assert_eq!(g.get_bool("test.bool_true"), Some(true));
    assert_eq!(g.get_str("test.string"), Some("héllo wörld — 日本語 🦀"));
    assert_eq!(g.get_array("test.arr.string").map(<[Value]>::len), Some(4));
    assert_eq!(g.get("missing"), None);
    assert_eq!(g.get("test.arr.nested3").map(Value::type_name), Some("ARRAY"));
}

#[test]
fn dequantized_values_match_gguf_py() {
    for f in files() {
        let name = f["file"].as_str().unwrap();
        let bytes = read_fixture(name);
        let want = read_f32s(f["expected"].as_str().unwrap());
        let g = Gguf::parse(&bytes, bytes.len() as u64).unwrap();
        let mut got = Vec::new();
        for t in &g.tensors {
            let data = g.tensor_data(&bytes, t).unwrap();
            let values = dequantize_to_vec(t.ty, data, t.n_elements as usize).unwrap();
            // The in-place form must agree with the allocating one.
            let mut out = vec![0f32; values.len()];
            dequantize(t.ty, data, &mut out).unwrap();
            assert_eq!(out.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), values.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
            got.extend(values);
        }
        assert_close(&got, &want, name);
    }
}

#[test]
fn header_reader_matches_parse_for_any_chunking() {
    for f in files() {
        let name = f["file"].as_str().unwrap();
        let bytes = read_fixture(name);
        let whole = Gguf::parse(&bytes, bytes.len() as u64).unwrap();
        for chunk in [1, 7, 1 << 20] {
            let mut reader = HeaderReader::new(bytes.len() as u64);
            let mut found = None;
            for c in bytes.chunks(chunk) {
                if let Some(g) = reader.push(c).unwrap() {
                    assert!(found.is_none(), "header returned twice");
                    found = Some(g);
                }
            }
            let g = found.unwrap_or_else(|| panic!("{name}: no header with {chunk}-byte chunks"));
            assert_eq!(g.metadata, whole.metadata);
            assert_eq!(g.tensors, whole.tensors);
            assert_eq!((g.version, g.alignment, g.data_offset, g.file_len), (whole.version, whole.alignment, whole.data_offset, whole.file_len));
        }
    }
}
