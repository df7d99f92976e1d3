package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/raftkit/raft/internal/certs"
	"github.com/raftkit/raft/transport"
)

// raftTLS is how a replica secures its Raft transport: serve's flags
// -tls-ca, -tls-cert, -tls-key and -insecure.
type raftTLS struct {
	ca, cert, key string
	insecure      bool
}

// addRaftTLSFlags defines the flags of raftTLS on fs.
func addRaftTLSFlags(fs *flag.FlagSet) *raftTLS {
	var f raftTLS
	fs.StringVar(&f.ca, "tls-ca", "", "")
	fs.StringVar(&f.cert, "tls-cert", "", "")
	fs.StringVar(&f.key, "tls-key", "", "")
	fs.BoolVar(&f.insecure, "insecure", false, "")
	return &f
}

// check says what is wrong with the flags, if anything.
func (f *raftTLS) check() error {
	some := f.ca != "" || f.cert != "" || f.key != ""
	all := f.ca != "" && f.cert != "" && f.key != ""
	switch {
	case f.insecure && some:
		return errors.New("-insecure with -tls-ca, -tls-cert or -tls-key: give either the TLS flags or -insecure")
	case some && !all:
		return errors.New("mutual TLS needs all three of -tls-ca, -tls-cert and -tls-key (\"raftkv certs\" makes them)")
	case !some && !f.insecure:
		return errors.New("no TLS for the Raft transport: give -tls-ca, -tls-cert and -tls-key (\"raftkv certs\" makes them), or -insecure to run it over plain TCP on a trusted network")
	}
	return nil
}

// apply sets cfg's TLS or Insecure as the flags say, and returns the
// reloader of the certificate files (nil with -insecure), for SIGHUP.
func (f *raftTLS) apply(cfg *transport.Config, log *slog.Logger) (*transport.CertReloader, error) {
	if f.insecure {
		cfg.Insecure = true
		addr := cfg.Peers[cfg.ID]
		if cfg.Listener != nil {
			addr = cfg.Listener.Addr().String()
		}
		if !loopback(addr) {
			log.Warn("raftkv serve: -insecure: the Raft transport runs over plain TCP, without authentication, on an address other hosts may reach: anyone who reaches it can pose as a replica and overwrite the data; use -tls-ca, -tls-cert and -tls-key", "raft_addr", addr)
		}
		return nil, nil
	}
	r, err := transport.NewCertReloader(f.ca, f.cert, f.key)
	if err != nil {
		return nil, err
	}
	cfg.TLS = r.TLSConfig()
	return r, nil
}

// loopback reports whether addr ("host:port") is on a loopback address.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// localTLSArgs returns the serve flags of replica id for the certificates
// certs.WriteLocalCluster wrote in dir.
func localTLSArgs(dir string, id int) []string {
	return []string{
		"-tls-ca", filepath.Join(dir, certs.CACertFile),
		"-tls-cert", filepath.Join(dir, certs.ServerCertFile(id)),
		"-tls-key", filepath.Join(dir, certs.ServerKeyFile(id)),
	}
}

// runCerts is "raftkv certs": it writes a cluster's certificates.
func runCerts(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("certs", stderr)
	dir := fs.String("dir", "", "")
	ids := fs.String("ids", "1,2,3", "")
	hosts := fs.String("hosts", "", "")
	pos, code, ok := parseFlags(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "raftkv certs: "+format+"\n"+usageHint("certs")+"\n", a...)
		return exitUsage
	}
	if len(pos) > 0 {
		return fail("%s", noArgs(pos))
	}
	if *dir == "" {
		return fail("-dir is required: the directory to write the certificates in")
	}
	var list []int
	for s := range strings.SplitSeq(*ids, ",") {
		id, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || id <= 0 {
			return fail("-ids: bad replica ID %q (want positive numbers, as 1,2,3)", s)
		}
		list = append(list, id)
	}
	var hostList []string
	for h := range strings.SplitSeq(*hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hostList = append(hostList, h)
		}
	}
	if err := certs.WriteLocalCluster(*dir, list, hostList); err != nil {
		fmt.Fprintf(stderr, "raftkv certs: %v\n", err)
		return exitError
	}
	fmt.Fprintf(stdout, "raftkv: certificates of replicas %s in %s (existing files kept)\n", *ids, *dir)
	return exitOK
}

// reloadCerts reads the Raft transport's certificate, key and CAs again
// (on SIGHUP); on failure it keeps those it has.
func (r *replica) reloadCerts() {
	if r.certs == nil {
		r.log.Info("raftkv serve: SIGHUP: no TLS certificates to reload (-insecure)")
		return
	}
	if err := r.certs.Reload(); err != nil {
		r.log.Error("raftkv serve: SIGHUP: cannot reload the TLS certificates; keeping the ones in use", "err", err)
		return
	}
	r.log.Info("raftkv serve: SIGHUP: reloaded the TLS certificates", "ca", r.cfg.raftTLS.ca, "cert", r.cfg.raftTLS.cert)
}
