//! GGUF v3 reader.
//!
//! The file is memory-mapped; metadata is parsed into owned values and tensor
//! data stays in the map (`Bytes` slices). Every offset and length read from
//! the file is bounds-checked with checked arithmetic, so a truncated or
//! malformed file yields `EngineError::Gguf`, never a panic (a proptest feeds
//! random and truncated bytes to `GgufFile::parse`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::error::EngineError;
use crate::quant::GgmlType;

const MAGIC: &[u8; 4] = b"GGUF";
/// Upper bounds that keep a hostile header from making us allocate gigabytes
/// before we notice the file is too short.
const MAX_TENSORS: u64 = 1 << 16;
const MAX_KV: u64 = 1 << 16;
const MAX_DIMS: u32 = 4;
const MAX_ARRAY_NESTING: u32 = 2;

/// Shared immutable bytes: either a window into the model's memory map or an
/// owned buffer (tiny in-memory test models). Cloning is an `Arc` bump.
#[derive(Clone)]
pub struct Bytes {
    backing: Arc<dyn AsRef<[u8]> + Send + Sync>,
    start: usize,
    len: usize,
}

impl Bytes {
    pub fn from_vec(v: Vec<u8>) -> Self {
        let len = v.len();
        Bytes { backing: Arc::new(v), start: 0, len }
    }
    pub fn as_slice(&self) -> &[u8] {
        // Construction guarantees start + len <= backing length.
        &(*self.backing).as_ref()[self.start..self.start + self.len]
    }
    /// A sub-window; `None` when out of range.
    pub fn slice(&self, off: usize, len: usize) -> Option<Bytes> {
        let end = off.checked_add(len)?;
        if end > self.len {
            return None;
        }
        Some(Bytes { backing: self.backing.clone(), start: self.start + off, len })
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bytes({} bytes)", self.len)
    }
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    Str(String),
    Array(Vec<Value>),
}

impl Value {
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::I8(v) => Some(v as i64),
            Value::I16(v) => Some(v as i64),
            Value::I32(v) => Some(v as i64),
            Value::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            Value::F32(v) => Some(v),
            Value::F64(v) => Some(v as f32),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// One tensor's header. `dims[0]` is the innermost (row) dimension, as in ggml.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Offset relative to the start of the data section.
    pub offset: u64,
    pub size_bytes: usize,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

pub struct GgufFile {
    pub version: u32,
    pub metadata: HashMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
    data: Bytes,
}

impl GgufFile {
    /// Memory-maps and parses a GGUF file.
    pub fn open(path: &Path) -> Result<Self, EngineError> {
        let file = std::fs::File::open(path).map_err(|e| EngineError::Io(format!("{}: {e}", path.display())))?;
        // SAFETY: the map is read-only and we never hand out `&mut`. The usual
        // mmap caveat applies (another process truncating the file under us
        // would fault); model files are treated as immutable artifacts.
        let map = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|e| EngineError::Io(format!("mmap {}: {e}", path.display())))?;
        let len = map.len();
        Self::parse(Bytes { backing: Arc::new(map), start: 0, len })
    }

    /// Parses GGUF bytes already in memory.
    pub fn parse(bytes: Bytes) -> Result<Self, EngineError> {
        let mut r = Reader { buf: bytes.as_slice(), pos: 0 };
        if r.take(4)? != MAGIC {
            return Err(gguf_err("bad magic (not a GGUF file)"));
        }
        let version = r.u32()?;
        if version != 3 && version != 2 {
            return Err(gguf_err(format!("unsupported GGUF version {version}")));
        }
        let n_tensors = r.u64()?;
        let n_kv = r.u64()?;
        if n_tensors > MAX_TENSORS || n_kv > MAX_KV {
            return Err(gguf_err("implausible tensor or metadata count"));
        }
        let mut metadata = HashMap::new();
        for _ in 0..n_kv {
            let key = r.string()?;
            let ty = r.u32()?;
            let v = r.value(ty, 0)?;
            metadata.insert(key, v);
        }
        let alignment = match metadata.get("general.alignment") {
            Some(v) => v.as_u64().filter(|a| *a > 0 && a.is_power_of_two() && *a <= 1 << 16),
            None => Some(32),
        }
        .ok_or_else(|| gguf_err("bad general.alignment"))?;

        let mut tensors = Vec::with_capacity(n_tensors as usize);
        for _ in 0..n_tensors {
            let name = r.string()?;
            let n_dims = r.u32()?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(gguf_err(format!("tensor {name}: bad dim count {n_dims}")));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(r.u64()?);
            }
            let raw_ty = r.u32()?;
            let ty = GgmlType::from_u32(raw_ty)
                .ok_or_else(|| EngineError::UnsupportedTensorType { tensor: name.clone(), ty: raw_ty })?;
            let offset = r.u64()?;
            let n_el = dims
                .iter()
                .try_fold(1u64, |a, &d| a.checked_mul(d))
                .ok_or_else(|| gguf_err(format!("tensor {name}: size overflow")))?;
            if dims[0] % ty.block_len() as u64 != 0 {
                return Err(gguf_err(format!("tensor {name}: row not a multiple of the block")));
            }
            let size = (n_el / ty.block_len() as u64)
                .checked_mul(ty.block_bytes() as u64)
                .and_then(|s| usize::try_from(s).ok())
                .ok_or_else(|| gguf_err(format!("tensor {name}: size overflow")))?;
            tensors.push(TensorInfo { name, dims, ty, offset, size_bytes: size });
        }
        let data_start = r.pos.div_ceil(alignment as usize) * alignment as usize;
        if data_start > bytes.len() {
            return Err(gguf_err("truncated before tensor data"));
        }
        let data = bytes
            .slice(data_start, bytes.len() - data_start)
            .ok_or_else(|| gguf_err("truncated before tensor data"))?;
        for t in &tensors {
            let off = usize::try_from(t.offset).map_err(|_| gguf_err("tensor offset overflow"))?;
            if data.slice(off, t.size_bytes).is_none() {
                return Err(gguf_err(format!("tensor {} extends past end of file", t.name)));
            }
        }
        Ok(GgufFile { version, metadata, tensors, data })
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The raw bytes of a tensor (bounds were checked at parse time).
    pub fn tensor_bytes(&self, info: &TensorInfo) -> Result<Bytes, EngineError> {
        let off = usize::try_from(info.offset).map_err(|_| gguf_err("tensor offset overflow"))?;
        self.data.slice(off, info.size_bytes).ok_or_else(|| gguf_err(format!("tensor {} out of range", info.name)))
    }
}

pub(crate) fn gguf_err(msg: impl Into<String>) -> EngineError {
    EngineError::Gguf(msg.into())
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EngineError> {
        let end = self.pos.checked_add(n).ok_or_else(|| gguf_err("length overflow"))?;
        let s = self.buf.get(self.pos..end).ok_or_else(|| gguf_err("unexpected end of file"))?;
        self.pos = end;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N], EngineError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn u32(&mut self) -> Result<u32, EngineError> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    fn u64(&mut self) -> Result<u64, EngineError> {
        Ok(u64::from_le_bytes(self.arr()?))
    }
    fn len_prefix(&mut self) -> Result<usize, EngineError> {
        let n = self.u64()?;
        // Any length beyond what remains cannot be valid: reject before allocating.
        usize::try_from(n)
            .ok()
            .filter(|n| *n <= self.buf.len() - self.pos)
            .ok_or_else(|| gguf_err("length exceeds file size"))
    }
    fn string(&mut self) -> Result<String, EngineError> {
        let n = self.len_prefix()?;
        let s = self.take(n)?;
        String::from_utf8(s.to_vec()).map_err(|_| gguf_err("string is not UTF-8"))
    }
    fn value(&mut self, ty: u32, depth: u32) -> Result<Value, EngineError> {
        Ok(match ty {
            0 => Value::U8(self.arr::<1>()?[0]),
            1 => Value::I8(self.arr::<1>()?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.arr()?)),
            3 => Value::I16(i16::from_le_bytes(self.arr()?)),
            4 => Value::U32(self.u32()?),
            5 => Value::I32(i32::from_le_bytes(self.arr()?)),
            6 => Value::F32(f32::from_le_bytes(self.arr()?)),
            7 => match self.arr::<1>()?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(gguf_err(format!("bad bool byte {b}"))),
            },
            8 => Value::Str(self.string()?),
            9 => {
                if depth >= MAX_ARRAY_NESTING {
                    return Err(gguf_err("arrays nested too deeply"));
                }
                let elem_ty = self.u32()?;
                let n = self.len_prefix()?;
                let mut v = Vec::with_capacity(n.min(1 << 20));
                for _ in 0..n {
                    v.push(self.value(elem_ty, depth + 1)?);
                }
                Value::Array(v)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(i64::from_le_bytes(self.arr()?)),
            12 => Value::F64(f64::from_le_bytes(self.arr()?)),
            t => return Err(gguf_err(format!("unknown metadata value type {t}"))),
        })
    }
}

/// Writes a GGUF v3 file in memory (tests and tiny models use it to exercise
/// the real loading path without a file on disk).
#[derive(Default)]
pub struct GgufWriter {
    kv: Vec<(String, Value)>,
    tensors: Vec<(String, Vec<u64>, GgmlType, Vec<u8>)>,
}

impl GgufWriter {
    pub fn kv(&mut self, key: &str, v: Value) -> &mut Self {
        self.kv.push((key.to_string(), v));
        self
    }
    pub fn tensor(&mut self, name: &str, dims: Vec<u64>, ty: GgmlType, data: Vec<u8>) -> &mut Self {
        self.tensors.push((name.to_string(), dims, ty, data));
        self
    }
    pub fn to_bytes(&self) -> Vec<u8> {
        fn put_str(o: &mut Vec<u8>, s: &str) {
            o.extend_from_slice(&(s.len() as u64).to_le_bytes());
            o.extend_from_slice(s.as_bytes());
        }
        fn type_of(v: &Value) -> u32 {
            match v {
                Value::U8(_) => 0,
                Value::I8(_) => 1,
                Value::U16(_) => 2,
                Value::I16(_) => 3,
                Value::U32(_) => 4,
                Value::I32(_) => 5,
                Value::F32(_) => 6,
                Value::Bool(_) => 7,
                Value::Str(_) => 8,
                Value::Array(_) => 9,
                Value::U64(_) => 10,
                Value::I64(_) => 11,
                Value::F64(_) => 12,
            }
        }
        fn put_val(o: &mut Vec<u8>, v: &Value) {
            match v {
                Value::U8(x) => o.push(*x),
                Value::I8(x) => o.push(*x as u8),
                Value::U16(x) => o.extend_from_slice(&x.to_le_bytes()),
                Value::I16(x) => o.extend_from_slice(&x.to_le_bytes()),
                Value::U32(x) => o.extend_from_slice(&x.to_le_bytes()),
                Value::I32(x) => o.extend_from_slice(&x.to_le_bytes()),
                Value::F32(x) => o.extend_from_slice(&x.to_le_bytes()),
                Value::Bool(x) => o.push(*x as u8),
                Value::Str(s) => put_str(o, s),
                Value::Array(a) => {
                    let et = a.first().map(type_of).unwrap_or(4);
                    o.extend_from_slice(&et.to_le_bytes());
                    o.extend_from_slice(&(a.len() as u64).to_le_bytes());
                    for x in a {
                        put_val(o, x);
                    }
                }
                Value::U64(x) => o.extend_from_slice(&x.to_le_bytes()),
                Value::I64(x) => o.extend_from_slice(&x.to_le_bytes()),
                Value::F64(x) => o.extend_from_slice(&x.to_le_bytes()),
            }
        }
        let mut o = Vec::new();
        o.extend_from_slice(MAGIC);
        o.extend_from_slice(&3u32.to_le_bytes());
        o.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        o.extend_from_slice(&(self.kv.len() as u64).to_le_bytes());
        for (k, v) in &self.kv {
            put_str(&mut o, k);
            o.extend_from_slice(&type_of(v).to_le_bytes());
            put_val(&mut o, v);
        }
        let mut off = 0u64;
        for (name, dims, ty, data) in &self.tensors {
            put_str(&mut o, name);
            o.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in dims {
                o.extend_from_slice(&d.to_le_bytes());
            }
            o.extend_from_slice(&(*ty as u32).to_le_bytes());
            o.extend_from_slice(&off.to_le_bytes());
            off += (data.len() as u64).div_ceil(32) * 32;
        }
        while o.len() % 32 != 0 {
            o.push(0);
        }
        for (_, _, _, data) in &self.tensors {
            o.extend_from_slice(data);
            while o.len() % 32 != 0 {
                o.push(0);
            }
        }
        o
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<u8> {
        let mut w = GgufWriter::default();
        w.kv("general.architecture", Value::Str("llama".into()))
            .kv("llama.block_count", Value::U32(2))
            .kv("arr", Value::Array(vec![Value::Str("a".into()), Value::Str("bc".into())]))
            .tensor("t", vec![4, 2], GgmlType::F32, vec![0u8; 32]);
        w.to_bytes()
    }

    #[test]
    fn roundtrip_writer_reader() {
        let f = GgufFile::parse(Bytes::from_vec(sample())).unwrap();
        assert_eq!(f.get("general.architecture").and_then(Value::as_str), Some("llama"));
        assert_eq!(f.get("llama.block_count").and_then(Value::as_u64), Some(2));
        assert_eq!(f.get("arr").and_then(Value::as_array).map(|a| a.len()), Some(2));
        let t = f.tensor_info("t").unwrap();
        assert_eq!(t.dims, vec![4, 2]);
        assert_eq!(f.tensor_bytes(t).unwrap().len(), 32);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let b = sample();
        for n in 0..b.len() - 1 {
            // Tensor data is the last 32 bytes; any cut before its end must fail.
            if n < b.len() - 1 {
                assert!(GgufFile::parse(Bytes::from_vec(b[..n].to_vec())).is_err(), "len {n}");
            }
        }
    }

    #[test]
    fn unknown_tensor_type_is_an_error() {
        let mut b = sample();
        // Find the tensor type field: it is the u32 right before the last u64 header field.
        let f = GgufFile::parse(Bytes::from_vec(b.clone())).unwrap();
        assert_eq!(f.tensors.len(), 1);
        let pos = b.windows(1 + 4 + 8 + 8 + 4).rposition(|w| w[0] == b't' && w[1..5] == 2u32.to_le_bytes()).unwrap();
        let ty_pos = pos + 1 + 4 + 16;
        b[ty_pos..ty_pos + 4].copy_from_slice(&99u32.to_le_bytes());
        assert!(matches!(GgufFile::parse(Bytes::from_vec(b)), Err(EngineError::UnsupportedTensorType { ty: 99, .. })));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
        #[test]
        fn random_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..512), valid_prefix in any::<bool>()) {
            if valid_prefix {
                let mut b = MAGIC.to_vec();
                b.extend_from_slice(&3u32.to_le_bytes());
                b.extend_from_slice(&bytes);
                bytes = b;
            }
            let _ = GgufFile::parse(Bytes::from_vec(bytes));
        }

        #[test]
        fn mutated_valid_file_never_panics(idx in 0usize..4096, val in any::<u8>(), cut in 0usize..4096) {
            let mut b = sample();
            let i = idx % b.len();
            b[i] = val;
            b.truncate(cut % (b.len() + 1));
            let _ = GgufFile::parse(Bytes::from_vec(b));
        }
    }
}
