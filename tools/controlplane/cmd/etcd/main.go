// Command etcd runs a single-member etcd server for the local test control plane.
//
// It embeds go.etcd.io/etcd/server/v3/embed (the etcd version that Kubernetes v1.36.3
// requires) instead of building etcd's own main, so this module stays a single dependency
// graph with kube-apiserver. It listens on loopback only, keeps its data in --data-dir and
// stops cleanly on SIGTERM or SIGINT.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

type options struct {
	dataDir      string
	clientPort   int
	peerPort     int
	quotaBytes   int64
	noFsync      bool
	logLevel     string
	readyTimeout time.Duration
}

func parseFlags(args []string) (options, error) {
	var opts options
	fs := flag.NewFlagSet("etcd", flag.ContinueOnError)
	fs.StringVar(&opts.dataDir, "data-dir", "", "directory for the member's data (required)")
	fs.IntVar(&opts.clientPort, "client-port", 0, "loopback port for clients (required)")
	fs.IntVar(&opts.peerPort, "peer-port", 0, "loopback port for the peer listener (required)")
	fs.Int64Var(&opts.quotaBytes, "quota-backend-bytes", 512<<20, "backend size quota in bytes")
	fs.BoolVar(&opts.noFsync, "unsafe-no-fsync", false, "skip fsync (throw-away test data only)")
	fs.StringVar(&opts.logLevel, "log-level", "warn", "debug, info, warn or error")
	fs.DurationVar(&opts.readyTimeout, "ready-timeout", time.Minute, "how long to wait for readiness")
	if err := fs.Parse(args); err != nil {
		return opts, err
	}
	switch {
	case opts.dataDir == "":
		return opts, errors.New("--data-dir is required")
	case opts.clientPort <= 0 || opts.clientPort > 65535:
		return opts, fmt.Errorf("--client-port must be a TCP port, got %d", opts.clientPort)
	case opts.peerPort <= 0 || opts.peerPort > 65535:
		return opts, fmt.Errorf("--peer-port must be a TCP port, got %d", opts.peerPort)
	case opts.peerPort == opts.clientPort:
		return opts, errors.New("--peer-port and --client-port must differ")
	}
	return opts, nil
}

func loopbackURL(port int) url.URL {
	return url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", port)}
}

func config(opts options) *embed.Config {
	cfg := embed.NewConfig()
	cfg.Name = "controlplane"
	cfg.Dir = opts.dataDir
	client := loopbackURL(opts.clientPort)
	peer := loopbackURL(opts.peerPort)
	cfg.ListenClientUrls = []url.URL{client}
	cfg.AdvertiseClientUrls = []url.URL{client}
	cfg.ListenPeerUrls = []url.URL{peer}
	cfg.AdvertisePeerUrls = []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.QuotaBackendBytes = opts.quotaBytes
	// A test cluster: few writes, so snapshot and compact often to keep the data dir small.
	cfg.SnapshotCount = 5000
	cfg.AutoCompactionMode = embed.CompactorModePeriodic
	cfg.AutoCompactionRetention = "5m"
	cfg.UnsafeNoFsync = opts.noFsync
	cfg.LogLevel = opts.logLevel
	cfg.LogOutputs = []string{embed.StdErrLogOutput}
	return cfg
}

func run(ctx context.Context, opts options) error {
	server, err := embed.StartEtcd(config(opts))
	if err != nil {
		return fmt.Errorf("starting etcd: %w", err)
	}
	defer server.Close()
	select {
	case <-server.Server.ReadyNotify():
		fmt.Fprintf(os.Stderr, "etcd ready on 127.0.0.1:%d\n", opts.clientPort)
	case <-time.After(opts.readyTimeout):
		return fmt.Errorf("etcd not ready after %s", opts.readyTimeout)
	case err := <-server.Err():
		return fmt.Errorf("etcd failed while starting: %w", err)
	}
	select {
	case <-ctx.Done():
		fmt.Fprintln(os.Stderr, "etcd stopping")
		return nil
	case err := <-server.Err():
		return fmt.Errorf("etcd failed: %w", err)
	}
}

func main() {
	opts, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "etcd:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, opts); err != nil {
		fmt.Fprintln(os.Stderr, "etcd:", err)
		stop()
		os.Exit(1)
	}
}
