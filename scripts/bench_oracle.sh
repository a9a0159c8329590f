#!/usr/bin/env bash
# The oracle-planner benchmark quoted in BENCHMARKS.md (resumable: rerun to continue).
source "$(dirname "$0")/bench_common.sh" bench_oracle 50
$J benchmark task=reach episodes=$N out=$OUT append=true
$J benchmark task=reach guardrails=keep_out episodes=$N out=$OUT append=true
$J benchmark task=push episodes=$N out=$OUT append=true
$J benchmark task=pick_place episodes=$N out=$OUT append=true
$J benchmark task=reach planner=mppi episodes=$N out=$OUT append=true
$J benchmark task=push planner=mppi episodes=$N out=$OUT append=true
$J benchmark task=pick_place planner=mppi episodes=$N out=$OUT append=true
