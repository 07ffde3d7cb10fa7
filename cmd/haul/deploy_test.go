package main

// Tests of the files under deploy/: the Kubernetes Indexed Job's manifest
// (its structure, then its container's command run N times as the Job would
// run it) and the Slurm array script run as Slurm would run its tasks.
// scripts/slurm-test.sh runs the script on a real Slurm cluster.

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/haul/haul/download/downloadtest"
)

// k8sDoc is the part of a Kubernetes object the test reads.
type k8sDoc struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Data map[string]string `json:"data"`
	Spec struct {
		CompletionMode       string `json:"completionMode"`
		Completions          int    `json:"completions"`
		Parallelism          int    `json:"parallelism"`
		BackoffLimitPerIndex *int   `json:"backoffLimitPerIndex"`
		PodFailurePolicy     struct {
			Rules []struct {
				Action      string `json:"action"`
				OnExitCodes *struct {
					Operator string `json:"operator"`
					Values   []int  `json:"values"`
				} `json:"onExitCodes"`
			} `json:"rules"`
		} `json:"podFailurePolicy"`
		AccessModes []string `json:"accessModes"`
		Template    struct {
			Spec struct {
				RestartPolicy                 string `json:"restartPolicy"`
				TerminationGracePeriodSeconds int    `json:"terminationGracePeriodSeconds"`
				Containers                    []struct {
					Args []string `json:"args"`
					Env  []struct {
						Name, Value string
					} `json:"env"`
					VolumeMounts []struct {
						Name      string `json:"name"`
						MountPath string `json:"mountPath"`
					} `json:"volumeMounts"`
				} `json:"containers"`
				Volumes []struct {
					Name                  string `json:"name"`
					PersistentVolumeClaim *struct {
						ClaimName string `json:"claimName"`
					} `json:"persistentVolumeClaim"`
					ConfigMap *struct {
						Name string `json:"name"`
					} `json:"configMap"`
				} `json:"volumes"`
			} `json:"spec"`
		} `json:"template"`
	} `json:"spec"`
}

// readK8s parses the multi-document YAML file with python3's yaml module
// (the module has no YAML parser of its own), or skips.
func readK8s(t *testing.T, name string) map[string]k8sDoc {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3")
	}
	if exec.Command(py, "-c", "import yaml").Run() != nil {
		t.Skip("no python3 yaml module")
	}
	out, err := exec.Command(py, "-c", "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))", name).Output()
	if err != nil {
		t.Fatalf("%s is not YAML: %v", name, err)
	}
	var docs []k8sDoc
	if err := json.Unmarshal(out, &docs); err != nil {
		t.Fatal(err)
	}
	m := map[string]k8sDoc{}
	for _, d := range docs {
		m[d.Kind] = d
	}
	return m
}

func argAfter(args []string, flag string) string {
	if i := slices.Index(args, flag); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return ""
}

func TestE2EKubernetesIndexedJob(t *testing.T) {
	t.Parallel()
	docs := readK8s(t, "../../deploy/kubernetes/haul-job.yaml")
	job, cm, pvc := docs["Job"], docs["ConfigMap"], docs["PersistentVolumeClaim"]
	spec := job.Spec
	pod := spec.Template.Spec
	if spec.CompletionMode != "Indexed" || spec.Completions < 2 || len(pod.Containers) != 1 {
		t.Fatalf("not an Indexed Job of several completions and one container: %+v", spec)
	}
	c := pod.Containers[0]
	shards := ""
	for _, e := range c.Env {
		if e.Name == envShards {
			shards = e.Value
		}
	}
	if shards != strconv.Itoa(spec.Completions) {
		t.Errorf("HAUL_SHARDS is %q, the Job's completions %d", shards, spec.Completions)
	}
	if argAfter(c.Args, "--shard") != "auto" {
		t.Errorf("the container does not run --shard auto: %q", c.Args)
	}
	// Restarts: a failed pod's index gets a new pod (or the container restarts).
	switch {
	case pod.RestartPolicy == "Never" && spec.BackoffLimitPerIndex != nil && *spec.BackoffLimitPerIndex > 0:
	case pod.RestartPolicy == "OnFailure":
	default:
		t.Errorf("a failed pod is not restarted on its index: restartPolicy %q, backoffLimitPerIndex %v", pod.RestartPolicy, spec.BackoffLimitPerIndex)
	}
	if pod.TerminationGracePeriodSeconds < 30 {
		t.Errorf("terminationGracePeriodSeconds %d: haul needs time to save its progress on SIGTERM", pod.TerminationGracePeriodSeconds)
	}
	failIndexOn2 := false
	for _, r := range spec.PodFailurePolicy.Rules {
		failIndexOn2 = failIndexOn2 || r.Action == "FailIndex" && r.OnExitCodes != nil && r.OnExitCodes.Operator == "In" && slices.Contains(r.OnExitCodes.Values, exitUsage)
	}
	if !failIndexOn2 {
		t.Errorf("a usage error (exit 2) is retried: no FailIndex rule for it")
	}
	// The output directory is the shared volume, the list in the ConfigMap.
	mounts := map[string]string{} // mount path -> "pvc:NAME" or "cm:NAME"
	for _, m := range c.VolumeMounts {
		for _, v := range pod.Volumes {
			switch {
			case v.Name != m.Name:
			case v.PersistentVolumeClaim != nil:
				mounts[m.MountPath] = "pvc:" + v.PersistentVolumeClaim.ClaimName
			case v.ConfigMap != nil:
				mounts[m.MountPath] = "cm:" + v.ConfigMap.Name
			}
		}
	}
	outDir, list := argAfter(c.Args, "-d"), argAfter(c.Args, "-i")
	if mounts[outDir] != "pvc:"+pvc.Metadata.Name || !slices.Contains(pvc.Spec.AccessModes, "ReadWriteMany") {
		t.Errorf("-d %s is not the ReadWriteMany claim %s (mounts %v, access %v)", outDir, pvc.Metadata.Name, mounts, pvc.Spec.AccessModes)
	}
	if mounts[filepath.Dir(list)] != "cm:"+cm.Metadata.Name || cm.Data[filepath.Base(list)] == "" {
		t.Errorf("-i %s is not a key of the ConfigMap %s (mounts %v)", list, cm.Metadata.Name, mounts)
	}
	man := argAfter(c.Args, "--manifest")
	if filepath.Dir(man) != outDir || !strings.Contains(man, "$(JOB_COMPLETION_INDEX)") {
		t.Errorf("--manifest %s: want one per index on the shared volume", man)
	}

	// The Job's pods, run here: the container's args with the mounts in temp
	// directories, $(JOB_COMPLETION_INDEX) expanded as Kubernetes does, and
	// a list of local URLs in place of the ConfigMap's.
	s := downloadtest.New(t)
	listFile, urls, want := shardedList(t, s, 80, "job", nil)
	root := t.TempDir()
	remap := func(p string) string { return filepath.Join(root, p) }
	if err := os.MkdirAll(remap(filepath.Dir(list)), 0o755); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(listFile)
	os.WriteFile(remap(list), b, 0o644)
	n := spec.Completions
	res := make([]result, n)
	manifests := make([]string, n)
	var wg sync.WaitGroup
	for k := range n {
		var args []string
		for _, a := range c.Args {
			a = strings.ReplaceAll(a, "$(JOB_COMPLETION_INDEX)", strconv.Itoa(k))
			if strings.HasPrefix(a, "/") {
				a = remap(a)
			}
			args = append(args, a)
		}
		manifests[k] = remap(strings.ReplaceAll(man, "$(JOB_COMPLETION_INDEX)", strconv.Itoa(k)))
		env := cleanEnv(fmt.Sprintf("%s=%d", envK8sIndex, k), envShards+"="+shards)
		wg.Go(func() { res[k] = runHaulInEnv(t, env, args...) })
	}
	wg.Wait()
	for k := range n {
		wantCode(t, res[k], exitOK)
		if argAfter(c.Args, "--progress") == "json" {
			parseJSONStream(t, res[k].stderr)
		}
	}
	checkShardManifests(t, manifests, urls, func(u string) string { return u })
	got := files(t, remap(outDir))
	for name := range got {
		if strings.HasPrefix(name, "manifest-") {
			delete(got, name)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d files on the volume, want %d", len(got), len(want))
	}
	for name, b := range want {
		if string(got[name]) != string(b) {
			t.Errorf("%s wrong or missing", name)
		}
	}
}

// The Slurm array script, run by bash as Slurm runs each task of --array=0-3
// (its variables set by hand): every file once, each task's manifest its shard.
func TestE2ESlurmScriptTasks(t *testing.T) {
	t.Parallel()
	const script = "../../deploy/slurm/haul-array.sbatch"
	src, err := os.ReadFile(script)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"--array=0-3", "--requeue"} {
		if !regexp.MustCompile(`(?m)^#SBATCH ` + regexp.QuoteMeta(d) + `$`).Match(src) {
			t.Errorf("%s has no #SBATCH %s", script, d)
		}
	}
	s := downloadtest.New(t)
	list, urls, want := shardedList(t, s, 60, "sbatch", nil)
	submit := t.TempDir()
	dir := filepath.Join(submit, "out")
	var wg sync.WaitGroup
	out := make([][]byte, 4)
	errs := make([]error, 4)
	for k := range 4 {
		cmd := exec.Command("bash", script, "-j", "2")
		cmd.Env = cleanEnv("SLURM_JOB_ID=4"+strconv.Itoa(k), "SLURM_ARRAY_JOB_ID=40", "SLURM_ARRAY_TASK_ID="+strconv.Itoa(k),
			"SLURM_ARRAY_TASK_MIN=0", "SLURM_ARRAY_TASK_MAX=3", "SLURM_ARRAY_TASK_STEP=1", "SLURM_ARRAY_TASK_COUNT=4",
			"SLURM_SUBMIT_DIR="+submit, "HAUL_LIST="+list, "HAUL="+haulBin)
		wg.Go(func() { out[k], errs[k] = cmd.CombinedOutput() })
	}
	wg.Wait()
	var manifests []string
	for k := range 4 {
		if errs[k] != nil {
			t.Errorf("task %d: %v\n%s", k, errs[k], out[k])
		}
		manifests = append(manifests, filepath.Join(dir, fmt.Sprintf("manifest-%d.jsonl", k)))
	}
	checkShardManifests(t, manifests, urls, func(u string) string { return u })
	got := files(t, dir)
	for name, b := range want {
		if string(got[name]) != string(b) {
			t.Errorf("%s wrong or missing", name)
		}
	}
	if len(got) != len(want)+4 {
		t.Errorf("%d files in %s, want %d and 4 manifests", len(got), dir, len(want))
	}
}
