#!/usr/bin/env bash
# The runs behind the README's peers table (../shared/data, this 2-core CPU machine), in the
# order they were made: cheap tools over several seeds first, slow ones on fewer seeds and
# datasets (STAGATE took 14 minutes on one DLPFC slice here, GraphST about 16). Everything lands
# in one results file; rerunning skips finished runs, so the script can be stopped and resumed.
#   bash benchmarks/peers/setup.sh            (WITH_R=1 for R/mclust, see setup.sh)
#   bash benchmarks/peers/run_shared.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="$here/.venv/bin/python"
data="${DATA:-$here/../../../shared/data}"
run() { "$py" "$here/run.py" --data "$data" --manifest "$here/manifest_shared.json" --out "$here/../results/peers" "$@"; }
run_to() { local name=$1; shift; run "$@" --out "$here/../results/$name"; }  # run_to NAME ARGS: results in results/NAME.* (the last --out wins)
single="151673 151674 151675 151676 starmap"
run --seeds 3 --tools pca pca_spatial banksy spotscape --datasets $single
run --seeds 1 --tools spagcn stagate graphst --datasets starmap
run --seeds 1 --tools spagcn --datasets 151673 151674 151675 151676
run --seeds 1 --tools stagate graphst spaceflow --datasets 151673
run --seeds 2 --tools pca pca_spatial banksy spotscape --datasets dlpfc_4_integrated
run --seeds 1 --tools spagcn spaceflow --datasets dlpfc_4_integrated
run --seeds 1 --tools spaceflow --datasets starmap 151674 151675 151676
run --seeds 1 --tools graphst --datasets 151674
run --seeds 1 --tools graphst --datasets 151675 151676
run --seeds 1 --tools stagate --datasets 151674 151675 151676
run --seeds 3 --tools spagcn --datasets $single
run --seeds 2 --tools spagcn --datasets dlpfc_4_integrated
# spotscape's rows again after a change to it (its rows removed from peers.json first), then
# spotscape and SpaGCN alternating in one session (peers_time.json emptied first), for a time
# ratio on the same day
spotscape_again() {
  run --seeds 3 --tools spotscape --datasets $single
  run --seeds 2 --tools spotscape --datasets dlpfc_4_integrated
  run_to peers_time --seeds 3 --tools spagcn spotscape --datasets 151673
  run_to peers_time --seeds 1 --tools spagcn spotscape --datasets dlpfc_4_integrated
}
spotscape_again  # after the kernel speed-ups of 2026-11-25
# STAGATE on the integration (2026-11-25; 69.5 minutes, one seed)
run --seeds 1 --tools stagate --datasets dlpfc_4_integrated --timeout 4500
spotscape_again  # after the unit-length embedding (2026-11-25, second session)
# SpaceFlow, the closest peer on 151674 and 151676, from one seed to three on the single slices
# (2026-11-30): its one run had been the best on those two slices
run --seeds 3 --tools spaceflow --datasets 151676
run --seeds 3 --tools spaceflow --datasets 151674
# ... and on the other three single slices (2026-12-01)
run --seeds 3 --tools spaceflow --datasets starmap
run --seeds 3 --tools spaceflow --datasets 151673
run --seeds 3 --tools spaceflow --datasets 151675
# STAGATE and GraphST from one seed to three on STARmap, the dataset where a run costs minutes
# (2026-12-01, third session)
run --seeds 3 --tools stagate graphst --datasets starmap
# STAGATE and GraphST from one seed to two on 151673 (the brief's slice) and 151676 (the slice where
# spotscape loses to BANKSY) (2026-12-01, fourth session; about 15 minutes per run)
run --seeds 2 --tools graphst stagate --datasets 151673
run --seeds 2 --tools graphst stagate --datasets 151676
# ... and on 151674 and 151675, so that both have two seeds on every DLPFC slice (2026-12-01, fifth
# session; 13-18 minutes per run)
run --seeds 2 --tools graphst stagate --datasets 151674 151675
# Harmony on the four slices' representations (2026-12-01, seventh session): BANKSY's own recipe for
# several samples, and the usual post-hoc correction applied to spotscape's embedding
run --seeds 2 --tools banksy_harmony spotscape_harmony --datasets dlpfc_4_integrated
# GraphST on the four slices integrated, one seed, with a 45-minute limit (2026-12-01, seventh
# session): it builds dense spots x spots matrices, 16x larger here than on one slice
run --seeds 1 --tools graphst --datasets dlpfc_4_integrated --timeout 2700
# The tools that cost seconds to minutes per run, from three seeds to the runner's default five on
# the single slices and from two to five on the four slices integrated (2026-12-02, eighth
# session); the deep peers stay at their one to three seeds (13-70 minutes per run here), and
# spotscape + Harmony at two (the same training as spotscape's row, four more minutes a run)
run --seeds 5 --tools pca pca_spatial banksy spotscape spagcn --datasets $single
run --seeds 5 --tools pca pca_spatial banksy spotscape spagcn banksy_harmony --datasets dlpfc_4_integrated
# SpaGCN and spotscape alternating in one session again, on the day of the five-seed runs
# (2026-12-02, eighth session), into a results file of its own
run_to peers_time_2026-12-02 --seeds 3 --tools spagcn spotscape --datasets 151673
run_to peers_time_2026-12-02 --seeds 1 --tools spagcn spotscape --datasets dlpfc_4_integrated
# The close calls on the single slices (151674: spotscape 0.466 against BANKSY 0.456; 151676: BANKSY
# 0.439 against 0.405) with the runner's --ten-seeds for the tools that cost seconds to a minute a
# run (2026-12-02, ninth session)
run --ten-seeds --tools pca pca_spatial banksy spotscape spagcn --datasets $single
# SpaGCN and spotscape alternating: three more pairs on the four slices integrated (2026-12-02,
# ninth session), into the same file
run_to peers_time_2026-12-02 --seeds 4 --tools spagcn spotscape --datasets dlpfc_4_integrated
# spotscape's own CPU kernel for its sparse products (numba, in place of torch's CSR product;
# 2026-12-02, tenth session): the same values up to float rounding, so spotscape's rows again.
# First SpaGCN and spotscape alternating in one session on the single slices, into a file of its own
run_to peers_time_2026-12-02b --seeds 2 --tools spagcn spotscape --datasets $single
run --ten-seeds --tools spotscape --rerun spotscape --datasets $single
# ... and after the integration's speed-ups (per-slice BatchNorm as a scale and shift, the top-k
# kernel, the scattered X^T G; single slices unchanged bit for bit): the four slices integrated,
# spotscape's rows again, then two more SpaGCN / spotscape pairs into the day's second timing file
run --tools spotscape --rerun spotscape --datasets dlpfc_4_integrated
run_to peers_time_2026-12-02b --seeds 2 --tools spagcn spotscape --datasets dlpfc_4_integrated
# The sparse products in chunks of rows that stay in cache (d2bd524; 2026-12-02, eleventh session):
# the same values up to float rounding, so spotscape's rows again. First SpaGCN and spotscape
# alternating in one session on the single slices, into a file of its own, then the ten-seed rows,
# the four slices integrated, and two SpaGCN / spotscape pairs on them
run_to peers_time_2026-12-02c --seeds 2 --tools spagcn spotscape --datasets $single
run --ten-seeds --tools spotscape --rerun spotscape --datasets $single
run --tools spotscape --rerun spotscape --datasets dlpfc_4_integrated
run_to peers_time_2026-12-02c --seeds 2 --tools spagcn spotscape --datasets dlpfc_4_integrated
# The training step with fewer dense temporaries and without torch._dynamo's import (3d38fc8;
# 2026-12-02, twelfth session): the same values up to float rounding, so spotscape's rows again,
# in the same order as after the previous change
run_to peers_time_2026-12-02d --seeds 2 --tools spagcn spotscape --datasets $single
run --ten-seeds --tools spotscape --rerun spotscape --datasets $single
run --tools spotscape --rerun spotscape --datasets dlpfc_4_integrated
run_to peers_time_2026-12-02d --seeds 2 --tools spagcn spotscape --datasets dlpfc_4_integrated
# scanpy imported only where genes are selected (a file of <= 5,000 genes never needs it; 2026-12-02,
# twelfth session): the two such single slices timed again against SpaGCN, into a file of their own;
# then spotscape + Harmony again on today's code
run_to peers_time_2026-12-02e --seeds 2 --tools spagcn spotscape --datasets 151674 starmap
run --seeds 2 --tools spotscape_harmony --rerun spotscape_harmony --datasets dlpfc_4_integrated
# A new machine this session (Zen 5, AVX-512; 2026-12-02, thirteenth session): SpaGCN and
# spotscape alternating on the single slices at c42d9be, before any change
run_to peers_time_2026-12-02f --seeds 2 --tools spagcn spotscape --datasets $single
# Imports that training never needs made lazy (c81b1af; 2026-12-02, thirteenth session, on a new
# machine: Zen 5): SpaGCN and spotscape alternating on the single slices, then on the integration
run_to peers_time_2026-12-02g --seeds 2 --tools spagcn spotscape --datasets $single
run_to peers_time_2026-12-02g --seeds 2 --tools spagcn spotscape --datasets dlpfc_4_integrated
# spotscape's own slice correction after training (spotscape.tl.mnn_correct, mutual nearest
# neighbours; 2026-12-02, thirteenth session): five seeds on the four slices integrated
run --tools spotscape_mnn --datasets dlpfc_4_integrated
# Four more SpaGCN / spotscape pairs on 151674, the slice where the two were level (2026-12-02,
# fourteenth session, the same Zen 5 machine, 1d9b019), into a file of their own
run_to peers_time_2026-12-02h --seeds 4 --tools spagcn spotscape --datasets 151674
# GraphST on the four slices integrated, given 70 minutes instead of 45 (2026-12-02, fourteenth
# session): it timed out again, at 8.5 GB resident when last seen
run --seeds 1 --tools graphst --rerun graphst --datasets dlpfc_4_integrated --timeout 4200
# spotscape's slice correction with its second pass in reverse order, the default since the
# fifteenth session (2026-12-03, Zen 5): the five seeds on the four slices integrated, rerun
run --tools spotscape_mnn --rerun spotscape_mnn --datasets dlpfc_4_integrated
# ... and again with each spot's move averaged over its 5 nearest spots of its own slice (smooth=5,
# the default since the twentieth session, 2026-12-03, Zen 5): the same command
#   run --tools spotscape_mnn --rerun spotscape_mnn --datasets dlpfc_4_integrated
# Four more SpaGCN / spotscape pairs on 151674 (2026-12-03, fifteenth session, Zen 5, 02c0d00),
# into a file of their own
run_to peers_time_2026-12-03 --seeds 4 --tools spagcn spotscape --datasets 151674
# Held out (2026-12-03, sixteenth session, Zen 5): two labelled datasets of ../shared/data that no
# spotscape default was chosen on (manifest_heldout.json), into a results file of their own:
# cheap tools over 5 seeds, the deep-learning peers over 3 on the olfactory bulb and 1 on 151510
run_heldout() { run --manifest "$here/manifest_heldout.json" --out "$here/../results/peers_heldout" "$@"; }  # the last --manifest/--out win
run_heldout --tools pca pca_spatial banksy spagcn spotscape
run_heldout --seeds 3 --tools spaceflow stagate graphst --datasets mouse_olfactory_bulb
run_heldout --seeds 1 --tools spaceflow stagate graphst --datasets 151510_500genes
# `spotscape run`'s representation (eighteenth session, 2026-12-03, Zen 5): trained a second time
# with edge_drop 0 where its expression-coherence check fails (pipeline.run(retry=True), the default)
run_heldout --tools spotscape_run
