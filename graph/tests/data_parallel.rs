//! GraphCL on GIN under `mpirun -np 2` with SyncBatchNorm (feature `mpi`): two processes with
//! batches of 16 train as one process with batches of 32 (augmentations keyed by the graph, GIN's
//! BatchNorm over every process's nodes, the loss over the gathered projections). Two SGD steps,
//! within 1e-4: GIN's BatchNorm on BZR163's one-hot node labels has channels of nearly no
//! variance, which amplify float rounding about tenfold a step (one process on the kernels and on
//! the generic path part likewise: 1e-7 at the first step, 1e-5 at the third, 1e-3 at the
//! fifth), so a longer run compares rounding, not the method. Skipped without mpirun unless `CONTRASTIVE_REQUIRE_MPI=1` (CI).
#![cfg(feature = "mpi")]

use candle_core::{DType, Device};
use contrastive_core::augment::RandomChoice;
use contrastive_core::collective::{set_sync_batch_norm, Collective, Local, Mpi};
use contrastive_core::data::{Loader, LoaderConfig, Shard};
use contrastive_core::train::{Objective, Trainer};
use contrastive_graph::augment::{NodeDrop, Subgraph};
use contrastive_graph::{load_tu, CollateGraphs, Graph, GraphCl, GraphClConfig, TuOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[path = "../../core/tests/support/mpirun.rs"]
mod support;
use support::{assert_same_run, checkpoint_values, sgd_steps, workers, OUT, WORKER};

fn model(collective: Arc<dyn Collective>) -> GraphCl {
    GraphCl::new(GraphClConfig::paper(33), 2, DType::F32, &Device::Cpu).unwrap().with_collective(collective)
}

/// Two SGD steps of GraphCL on BZR163, batches of `batch` per process, into `dir`.
fn train(collective: Arc<dyn Collective>, batch: usize, dir: &Path) {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/BZR163");
    let graphs = load_tu(&data, TuOptions { node_label_classes: Some(33) }).unwrap().graphs;
    let aug = RandomChoice::<Graph>(vec![Box::new(NodeDrop { ratio: 0.1 }), Box::new(Subgraph { ratio: 0.9 })]);
    let config = LoaderConfig { batch_size: batch, seed: 1, shuffle: true, drop_last: true, threads: 1 };
    let shard = Shard { rank: collective.rank(), world_size: collective.world_size() };
    let loader =
        Loader::new(graphs, aug, CollateGraphs { device: Device::Cpu }, config).unwrap().with_shard(shard).unwrap();
    let config = sgd_steps(1, 2, 0.005);
    let trainer = Trainer::new(config, model(Arc::clone(&collective))).unwrap();
    trainer.with_collective(collective).with_run_dir(dir).fit(&loader).unwrap();
}

/// The worker the test starts under mpirun (nothing when run as an ordinary test).
#[test]
fn mpi_worker() {
    if std::env::var(WORKER).is_err() {
        return;
    }
    let collective: Arc<dyn Collective> = Arc::new(Mpi::init().unwrap());
    set_sync_batch_norm(Some(Arc::clone(&collective)));
    train(collective, 16, &PathBuf::from(std::env::var(OUT).unwrap()));
    set_sync_batch_norm(None);
}

fn final_state(dir: &Path) -> Vec<(String, Vec<f32>)> {
    checkpoint_values(model(Arc::new(Local)).params(), dir)
}

#[test]
fn graphcl_with_sync_batch_norm_on_two_processes_equals_one_with_the_global_batch() {
    let one = tempfile::tempdir().unwrap();
    train(Arc::new(Local), 32, one.path());
    let two = tempfile::tempdir().unwrap();
    let Some(run) = workers(2, "graphcl", two.path()) else { return };
    assert!(run.status.success(), "{}", run.stderr);
    assert_same_run("graphcl", one.path(), two.path(), 2, 1e-4, final_state);
}
