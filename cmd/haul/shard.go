package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The batch schedulers' variables that --shard auto reads.
const (
	envSlurmID    = "SLURM_ARRAY_TASK_ID"
	envSlurmMin   = "SLURM_ARRAY_TASK_MIN"
	envSlurmMax   = "SLURM_ARRAY_TASK_MAX"
	envSlurmStep  = "SLURM_ARRAY_TASK_STEP"
	envSlurmCount = "SLURM_ARRAY_TASK_COUNT"
	envK8sIndex   = "JOB_COMPLETION_INDEX"
	// A Kubernetes Job exports its index but not its completion count: the
	// manifest sets HAUL_SHARDS to .spec.completions.
	envShards = "HAUL_SHARDS"
)

// parseShard parses --shard: "K/N" with 0 <= K < N, "auto" (K and N from the
// environment, see shardFromEnv), or "" (no sharding). from says where an
// automatic shard came from, for the log; "" otherwise.
func parseShard(s string, lookup func(string) (string, bool)) (k, n int, from string, err error) {
	switch s {
	case "":
		return 0, 0, "", nil
	case "auto":
		k, n, from, err = shardFromEnv(lookup)
		if err != nil {
			return 0, 0, "", fmt.Errorf("--shard auto: %w", err)
		}
		return k, n, from, nil
	}
	a, b, ok := strings.Cut(s, "/")
	k, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || n < 1 || k < 0 || k >= n {
		return 0, 0, "", fmt.Errorf("--shard %q: want K/N with 0 <= K < N, or auto", s)
	}
	return k, n, "", nil
}

// shardFromEnv finds this process's shard in a batch scheduler's variables:
// a Slurm job array task (K = (SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN) /
// SLURM_ARRAY_TASK_STEP, N = SLURM_ARRAY_TASK_COUNT) or a Kubernetes Indexed
// Job's pod (K = JOB_COMPLETION_INDEX, N = HAUL_SHARDS). Anything missing or
// inconsistent is an error naming the variables: a guessed shard would skip
// or repeat part of the list without a word.
func shardFromEnv(lookup func(string) (string, bool)) (k, n int, from string, err error) {
	_, slurm := lookup(envSlurmID)
	_, k8s := lookup(envK8sIndex)
	switch {
	case slurm && k8s:
		return 0, 0, "", fmt.Errorf("both %s (Slurm) and %s (Kubernetes) are set: give --shard K/N", envSlurmID, envK8sIndex)
	case slurm:
		return slurmShard(lookup)
	case k8s:
		return k8sShard(lookup)
	}
	if _, ok := lookup(envShards); ok {
		return 0, 0, "", fmt.Errorf("%s is set but %s is not: not a pod of a Kubernetes Indexed Job (completionMode: Indexed)", envShards, envK8sIndex)
	}
	if _, ok := lookup("SLURM_JOB_ID"); ok {
		return 0, 0, "", fmt.Errorf("in a Slurm job that is not an array: %s is not set (submit with sbatch --array=0-N)", envSlurmID)
	}
	return 0, 0, "", errors.New("no batch scheduler's shard in the environment: want " +
		envSlurmID + ", " + envSlurmMin + " and " + envSlurmCount + " (a Slurm job array, sbatch --array) or " +
		envK8sIndex + " and " + envShards + " (a Kubernetes Indexed Job); or give --shard K/N")
}

func slurmShard(lookup func(string) (string, bool)) (k, n int, from string, err error) {
	var missing []string
	// get reads a number; an absent variable is def, or missing where def < 0.
	get := func(name string, def int) int {
		s, ok := lookup(name)
		if !ok {
			if def < 0 {
				missing = append(missing, name)
			}
			return def
		}
		v, perr := strconv.Atoi(strings.TrimSpace(s))
		if perr != nil || v < 0 {
			err = errors.Join(err, fmt.Errorf("%s=%q is not a number", name, s))
		}
		return v
	}
	id, lo, count := get(envSlurmID, -1), get(envSlurmMin, -1), get(envSlurmCount, -1)
	step := get(envSlurmStep, 1)
	_, hasMax := lookup(envSlurmMax)
	hi := get(envSlurmMax, 0)
	if len(missing) > 0 {
		return 0, 0, "", fmt.Errorf("a Slurm array task without %s", strings.Join(missing, " and "))
	}
	if err != nil {
		return 0, 0, "", err
	}
	vars := fmt.Sprintf("%s=%d %s=%d %s=%d", envSlurmID, id, envSlurmMin, lo, envSlurmCount, count)
	if step != 1 {
		vars += fmt.Sprintf(" %s=%d", envSlurmStep, step)
	}
	// Only a range (--array=0-3, or 0-30:10) numbers its tasks 0..N-1 this way:
	// in a list like --array=1,2,7 two tasks could get one K and a K none.
	switch {
	case count < 1 || step < 1:
		return 0, 0, "", fmt.Errorf("inconsistent Slurm array: %s", vars)
	case hasMax && hi != lo+step*(count-1):
		return 0, 0, "", fmt.Errorf("the Slurm array is not a range (%s %s=%d): use --array=A-B or A-B:STEP, or --shard K/N", vars, envSlurmMax, hi)
	case id < lo || (id-lo)%step != 0 || (id-lo)/step >= count:
		return 0, 0, "", fmt.Errorf("inconsistent Slurm array: %s gives no shard below %d", vars, count)
	}
	return (id - lo) / step, count, "Slurm array task: " + vars, nil
}

func k8sShard(lookup func(string) (string, bool)) (k, n int, from string, err error) {
	is, _ := lookup(envK8sIndex)
	ns, ok := lookup(envShards)
	if !ok {
		return 0, 0, "", fmt.Errorf("%s is set but %s is not: set it to the Job's .spec.completions (the Job does not export it)", envK8sIndex, envShards)
	}
	k, err1 := strconv.Atoi(strings.TrimSpace(is))
	n, err2 := strconv.Atoi(strings.TrimSpace(ns))
	vars := fmt.Sprintf("%s=%q %s=%q", envK8sIndex, is, envShards, ns)
	if err1 != nil || err2 != nil || n < 1 || k < 0 || k >= n {
		return 0, 0, "", fmt.Errorf("inconsistent Kubernetes index: %s: want 0 <= %s < %s (the Job's completions)", vars, envK8sIndex, envShards)
	}
	return k, n, fmt.Sprintf("Kubernetes Indexed Job: %s=%d %s=%d", envK8sIndex, k, envShards, n), nil
}
