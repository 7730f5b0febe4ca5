#![no_main]
//! Arbitrary bytes as a whole GGUF file: parsing must not panic, and every tensor that parses must be
//! locatable and dequantizable without panicking.

use burrow_gguf::{dequantize_to_vec, Gguf, HeaderReader};
use libfuzzer_sys::fuzz_target;

/// Skip dequantizing tensors bigger than this, to keep each run fast (the bytes must exist anyway).
const MAX_DEQUANT_ELEMENTS: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let file_len = data.len() as u64;
    let parsed = Gguf::parse(data, file_len);
    // The streaming reader must agree with the one-shot parser.
    let mut reader = HeaderReader::new(file_len);
    let mut streamed = None;
    for chunk in data.chunks(97) {
        match reader.push(chunk) {
            Ok(Some(g)) => streamed = Some(Ok(g)),
            Ok(None) => {}
            Err(e) => {
                streamed = Some(Err(e));
                break;
            }
        }
    }
    match (&parsed, &streamed) {
        // Compared through Debug because metadata floats may be NaN, which is never == itself.
        (Ok(a), Some(Ok(b))) => assert_eq!(format!("{a:?}"), format!("{b:?}")),
        (Err(a), Some(Err(b))) => assert_eq!(a, b),
        (Err(_), None) => {}
        _ => panic!("parse and HeaderReader disagree: {parsed:?} vs {streamed:?}"),
    }
    let Ok(g) = parsed else { return };
    for t in &g.tensors {
        let bytes = g.tensor_data(data, t).expect("validated tensors lie inside the file");
        if t.ty.can_dequantize() && t.n_elements <= MAX_DEQUANT_ELEMENTS {
            dequantize_to_vec(t.ty, bytes, t.n_elements as usize).expect("validated tensors dequantize");
        }
    }
});
