package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/haul/haul/sink/bucket"
)

// s3Options are -d s3://BUCKET/PREFIX and the flags that say where the
// store is.
type s3Options struct {
	on             bool
	bucket, prefix string
	endpoint       string // "" AWS
	endpointFrom   string // the flag or variable it came from, for messages
	region         string
	pathStyle      bool
}

func s3Flags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "s3-endpoint",
			Usage: "with -d s3://BUCKET/PREFIX: the S3-compatible store at `URL` (http(s)://HOST[:PORT]; default $AWS_ENDPOINT_URL_S3, else $AWS_ENDPOINT_URL, else AWS S3)"},
		&cli.BoolFlag{Name: "s3-path-style",
			Usage: "with -d s3://...: address the bucket in the path (http://HOST/BUCKET/KEY), not the host name (always so for an IP address or localhost)"},
	}
}

// parseS3 reads -d s3://BUCKET/PREFIX, --s3-endpoint and --s3-path-style,
// and the environment the AWS tools read (AWS_ENDPOINT_URL_S3,
// AWS_ENDPOINT_URL, AWS_REGION, AWS_DEFAULT_REGION).
func parseS3(c *cli.Context, o *options, getenv func(string) string) error {
	if !strings.HasPrefix(o.dir, "s3://") {
		switch {
		case c.IsSet("s3-endpoint"):
			return errors.New("--s3-endpoint needs -d s3://BUCKET/PREFIX")
		case c.IsSet("s3-path-style"):
			return errors.New("--s3-path-style needs -d s3://BUCKET/PREFIX")
		}
		return nil
	}
	s := &o.s3
	s.on = true
	var err error
	if s.bucket, s.prefix, err = bucket.ParseURL(o.dir); err != nil {
		return fmt.Errorf("--dir %w", err)
	}
	s.pathStyle = c.Bool("s3-path-style")
	switch {
	case c.IsSet("s3-endpoint"):
		s.endpoint, s.endpointFrom = c.String("s3-endpoint"), "--s3-endpoint"
	case getenv("AWS_ENDPOINT_URL_S3") != "":
		s.endpoint, s.endpointFrom = getenv("AWS_ENDPOINT_URL_S3"), "AWS_ENDPOINT_URL_S3"
	case getenv("AWS_ENDPOINT_URL") != "":
		s.endpoint, s.endpointFrom = getenv("AWS_ENDPOINT_URL"), "AWS_ENDPOINT_URL"
	}
	if s.endpoint != "" {
		u, err := url.Parse(s.endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.Trim(u.Path, "/") != "" ||
			u.RawQuery != "" || u.User != nil {
			return fmt.Errorf("%s %q: want http://HOST[:PORT] or https://HOST[:PORT]", s.endpointFrom, s.endpoint)
		}
		if _, port, err := net.SplitHostPort(u.Host); err == nil && port == "" {
			return fmt.Errorf("%s %q: empty port", s.endpointFrom, s.endpoint)
		}
	}
	s.region = getenv("AWS_REGION")
	if s.region == "" {
		s.region = getenv("AWS_DEFAULT_REGION")
	}
	if o.compress != "" {
		return errors.New("--compress cannot go with -d s3://...: objects are stored as published")
	}
	return nil
}

// openBucket opens the bucket sink, checking the bucket and the credentials
// once: an error is the run's end (exit 3). The bodies read and not yet
// stored take at most two parts of 8 MiB per job (at least 4 jobs' worth),
// however many files are in flight over HTTP/2.
func openBucket(ctx context.Context, o *options, runTag string) (*bucket.Sink, error) {
	return bucket.Open(ctx, bucket.Options{
		Bucket: o.s3.bucket, Prefix: o.s3.prefix, Endpoint: o.s3.endpoint,
		Region: o.s3.region, PathStyle: o.s3.pathStyle, RunTag: runTag,
		Memory: int64(max(o.jobs, 4)) * 2 * 8 << 20,
	})
}

// osGetenv is os.Getenv (tests give their own environment to parseS3).
var osGetenv = os.Getenv
