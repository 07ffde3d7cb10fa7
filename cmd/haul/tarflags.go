package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/haul/haul/sink"
	"github.com/haul/haul/sink/bucket"
)

// tarOptions are --tar and --tar-size: the bodies go into WebDataset tar
// files instead of a file each.
type tarOptions struct {
	on       bool
	size     int64
	partSize int64 // with -d s3://: the parts of a tar's upload
}

func tarFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "tar",
			Usage: "store the bodies as WebDataset samples (KEY.EXT and KEY.json) in tar files 00000.tar, 00001.tar, ... in --dir (K-of-N-00000.tar, ... with --shard K/N) instead of a file each; with -d s3://..., as objects"},
		&cli.StringFlag{Name: "tar-size", Value: "1G",
			Usage: "finish a tar file once it holds `SIZE` bytes (K, M, G: powers of 1024; its last sample may carry it past); with --tar"},
		&cli.StringFlag{Name: "tar-part-size", Value: "8M",
			Usage: "with --tar -d s3://...: upload a tar object in parts of `SIZE` bytes (at least 5M; grown where a tar of --tar-size would take more than 9,000); a run stopped continues after its last part"},
	}
}

func parseTar(c *cli.Context, o *options) error {
	o.tar.on = c.Bool("tar")
	var err error
	if o.tar.size, err = parseSize("tar-size", c.String("tar-size"), 10<<10); err != nil {
		return err
	}
	if o.tar.partSize, err = parseSize("tar-part-size", c.String("tar-part-size"), sink.MinTarPartSize); err != nil {
		return err
	}
	if !o.tar.on {
		if c.IsSet("tar-size") {
			return errors.New("--tar-size needs --tar")
		}
		if c.IsSet("tar-part-size") {
			return errors.New("--tar-part-size needs --tar and -d s3://BUCKET/PREFIX")
		}
		return nil
	}
	if c.IsSet("tar-part-size") && !strings.HasPrefix(o.dir, "s3://") {
		return errors.New("--tar-part-size needs -d s3://BUCKET/PREFIX: tar files in a directory are not uploaded in parts")
	}
	// A finished tar file is never rewritten, and each sample is stored
	// once: nothing can replace a sample, and the bodies are stored as
	// published, where the tar readers of datasets expect them.
	switch {
	case o.mirror.update:
		return errors.New("--update cannot go with --tar: a sample in a finished tar file is never replaced (move the tar file away to fetch its samples again)")
	case o.force:
		return errors.New("--force cannot go with --tar: a sample in a finished tar file is never replaced, and each entry is stored in one tar file only")
	case o.compress != "":
		return errors.New("--compress cannot go with --tar: samples are stored as published, which is what WebDataset readers expect (compress the tar files afterwards if you must)")
	case o.mirror.recursive:
		return errors.New("-r cannot go with --tar: a walk names files by their path, a tar file stores samples named by their key")
	}
	o.table.sampleKeys = true
	return nil
}

// tarPrefix starts the name of this run's tar files: "K-of-N-" for a shard,
// so that N processes share the directory.
func tarPrefix(o *options) string {
	if o.shardN > 1 {
		return fmt.Sprintf("%d-of-%d-", o.shardK, o.shardN)
	}
	return ""
}

// openTarBucket opens the tar sink for --tar -d s3://... on the bucket b
// (read-only for --dry-run).
func openTarBucket(o *options, b *bucket.Sink) (*sink.Tar, error) {
	return sink.NewTarObjects(b.TarStore(), sink.TarOptions{Prefix: tarPrefix(o), Size: o.tar.size, ReadOnly: o.mirror.dryRun,
		Checkpoint: o.checkpoint, PartSize: o.tar.partSize})
}

// openTar opens the tar sink for --tar (read-only for --dry-run).
func openTar(o *options, dir string) (*sink.Tar, error) {
	return sink.NewTar(dir, sink.TarOptions{Prefix: tarPrefix(o), Size: o.tar.size, NoSync: o.noSync, ReadOnly: o.mirror.dryRun,
		Checkpoint: o.checkpoint})
}
