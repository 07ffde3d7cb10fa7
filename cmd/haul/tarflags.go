package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/haul/haul/sink"
)

// tarOptions are --tar and --tar-size: the bodies go into WebDataset tar
// files instead of a file each.
type tarOptions struct {
	on   bool
	size int64
}

func tarFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "tar",
			Usage: "store the bodies as WebDataset samples (KEY.EXT and KEY.json) in tar files 00000.tar, 00001.tar, ... in --dir (K-of-N-00000.tar, ... with --shard K/N) instead of a file each"},
		&cli.StringFlag{Name: "tar-size", Value: "1G",
			Usage: "finish a tar file once it holds `SIZE` bytes (K, M, G: powers of 1024; its last sample may carry it past); with --tar"},
	}
}

func parseTar(c *cli.Context, o *options) error {
	o.tar.on = c.Bool("tar")
	var err error
	if o.tar.size, err = parseSize("tar-size", c.String("tar-size"), 10<<10); err != nil {
		return err
	}
	if !o.tar.on {
		if c.IsSet("tar-size") {
			return errors.New("--tar-size needs --tar")
		}
		return nil
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

// openTar opens the tar sink for --tar (read-only for --dry-run).
func openTar(o *options, dir string) (*sink.Tar, error) {
	return sink.NewTar(dir, sink.TarOptions{Prefix: tarPrefix(o), Size: o.tar.size, NoSync: o.noSync, ReadOnly: o.mirror.dryRun,
		Checkpoint: o.checkpoint})
}
