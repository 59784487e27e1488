//! A store of named variables with seeded initialisation, behind candle-nn's `VarBuilder`.

use crate::error::{Error, Result};
use crate::rng::named_rng;
use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::{Init, VarBuilder};
use rand::Rng as _;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// How variables that candle-nn layers ask for are initialised.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum InitScheme {
    /// PyTorch's defaults: Linear and Conv weights Kaiming-uniform with a = √5, that is
    /// U(±1/√fan_in), biases U(±1/√fan_in); BatchNorm and LayerNorm weight 1, bias 0.
    #[default]
    PyTorch,
    /// Transformer (BERT) style: weights N(0, std), biases 0, norms weight 1 bias 0.
    Normal {
        /// Standard deviation of the weights (BERT: 0.02).
        std: f64,
    },
}

/// Names of variables that are state, not trainable parameters (PyTorch's buffers).
const BUFFER_SUFFIXES: [&str; 3] = ["running_mean", "running_var", "num_batches_tracked"];

/// Named variables, created on first request with values drawn from a stream keyed by the seed
/// and the variable's path. A model built twice with one seed is identical whatever order its
/// layers are built in. Cloning shares the variables.
#[derive(Clone)]
pub struct ParamStore {
    vars: Arc<Mutex<BTreeMap<String, Var>>>,
    seed: u64,
    scheme: InitScheme,
}

impl ParamStore {
    /// An empty store.
    pub fn new(seed: u64, scheme: InitScheme) -> Self {
        Self { vars: Arc::new(Mutex::new(BTreeMap::new())), seed, scheme }
    }

    /// A `VarBuilder` over this store, for candle-nn layers and our own.
    pub fn var_builder(&self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), dtype, device.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Var>> {
        // A panic while holding the lock leaves a map that is still consistent.
        self.vars.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every variable, sorted by path.
    pub fn all(&self) -> Vec<(String, Var)> {
        self.lock().iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// The trainable variables (buffers such as BatchNorm running statistics left out), sorted.
    pub fn trainable(&self) -> Vec<(String, Var)> {
        self.all().into_iter().filter(|(k, _)| !is_buffer(k)).collect()
    }

    /// One variable by path.
    pub fn get(&self, path: &str) -> Option<Var> {
        self.lock().get(path).cloned()
    }

    /// The values of every variable, for saving.
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        self.lock().iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect()
    }

    /// Writes every variable to a safetensors file.
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::atomic::save_safetensors(&self.tensors(), path)
    }

    /// Sets every variable from a safetensors file; a missing tensor, an extra one, a wrong shape
    /// or a NaN or infinity is an error naming it, and leaves the model as it was.
    pub fn load(&self, path: &Path) -> Result<()> {
        let device = self.lock().values().next().map(|v| v.device().clone()).unwrap_or(Device::Cpu);
        let loaded = candle_core::safetensors::load(path, &device)
            .map_err(|e| Error::checkpoint(path, format!("cannot read: {e}")))?;
        self.set_all(&loaded, path)
    }

    /// Sets every variable from `tensors` (checked as in [`ParamStore::load`]).
    pub fn set_all(&self, tensors: &HashMap<String, Tensor>, origin: &Path) -> Result<()> {
        let vars = self.lock();
        if let Some(extra) = tensors.keys().find(|k| !vars.contains_key(*k)) {
            return Err(Error::checkpoint(origin, format!("tensor `{extra}` is not a variable of this model")));
        }
        for (name, var) in vars.iter() {
            let t =
                tensors.get(name).ok_or_else(|| Error::checkpoint(origin, format!("tensor `{name}` is missing")))?;
            if t.dims() != var.dims() {
                return Err(Error::checkpoint(
                    origin,
                    format!("tensor `{name}` has shape {:?}, the model expects {:?}", t.dims(), var.dims()),
                ));
            }
            check_finite(name, t, origin)?;
        }
        // Only once every tensor passed: a refused file leaves the model as it was.
        for (name, var) in vars.iter() {
            var.set(&tensors[name].to_dtype(var.dtype())?)?;
        }
        Ok(())
    }

    fn init(&self, name: &str, shape: &Shape, hint: Init) -> Vec<f64> {
        let n = shape.elem_count();
        let mut rng = named_rng(self.seed, name);
        let fan_in: usize = shape.dims().iter().skip(1).product::<usize>().max(1);
        let uniform =
            |rng: &mut crate::rng::Rng, b: f64| -> Vec<f64> { (0..n).map(|_| rng.random_range(-b..=b)).collect() };
        match (hint, self.scheme) {
            (Init::Const(c), _) => vec![c; n],
            (Init::Kaiming { .. }, InitScheme::PyTorch) => uniform(&mut rng, 1.0 / (fan_in as f64).sqrt()),
            (Init::Kaiming { .. } | Init::Randn { .. }, InitScheme::Normal { std }) => normal(&mut rng, n, 0.0, std),
            // candle-nn asks for U(±1/√fan_in) only for biases.
            (Init::Uniform { .. }, InitScheme::Normal { .. }) => vec![0.0; n],
            (Init::Uniform { lo, up }, InitScheme::PyTorch) => (0..n).map(|_| rng.random_range(lo..=up)).collect(),
            (Init::Randn { mean, stdev }, InitScheme::PyTorch) => normal(&mut rng, n, mean, stdev),
        }
    }
}

/// Fails, naming the tensor, the first bad element and the file, when a floating-point tensor
/// read from `origin` holds a NaN or an infinity: weights with a flipped exponent bit would
/// otherwise load and train into NaN many steps later.
pub fn check_finite(name: &str, t: &Tensor, origin: &Path) -> Result<()> {
    if !t.dtype().is_float() {
        return Ok(());
    }
    let values = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    if let Some(at) = values.iter().position(|v| !v.is_finite()) {
        return Err(Error::checkpoint(
            origin,
            format!(
                "tensor `{name}` holds {} at element {at} of {}: the file is damaged or was saved from a diverged model",
                values[at],
                values.len()
            ),
        ));
    }
    Ok(())
}

/// Whether a variable path names a buffer rather than a trainable parameter.
pub fn is_buffer(path: &str) -> bool {
    BUFFER_SUFFIXES.iter().any(|s| path.ends_with(s))
}

/// Box-Muller normal draws.
fn normal(rng: &mut crate::rng::Rng, n: usize, mean: f64, std: f64) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let u1: f64 = rng.random_range(f64::EPSILON..1.0);
            let u2: f64 = rng.random();
            mean + std * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        })
        .collect()
}

impl candle_nn::var_builder::SimpleBackend for ParamStore {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        if let Some(v) = self.get(name) {
            if v.shape() != &s {
                candle_core::bail!("variable `{name}` exists with shape {:?}, asked for {:?}", v.dims(), s.dims());
            }
            return Ok(v.as_tensor().clone());
        }
        let values = Tensor::from_vec(self.init(name, &s, h), s, dev)?.to_dtype(dtype)?;
        let var = Var::from_tensor(&values)?;
        self.lock().insert(name.to_string(), var.clone());
        Ok(var.as_tensor().clone())
    }

    fn get_unchecked(&self, name: &str, dtype: DType, _dev: &Device) -> candle_core::Result<Tensor> {
        match self.get(name) {
            Some(v) => v.as_tensor().to_dtype(dtype),
            None => candle_core::bail!("variable `{name}` does not exist"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.lock().contains_key(name)
    }
}
