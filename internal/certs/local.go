package certs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Validity of the certificates WriteLocalCluster makes.
const (
	LocalCAValidity   = 10 * 365 * 24 * time.Hour
	LocalLeafValidity = 2 * 365 * 24 * time.Hour
	// LocalClientName is the name in the client certificate of
	// WriteLocalCluster.
	LocalClientName = "raftkv"
)

// Names of the files WriteLocalCluster writes in its directory.
const (
	CACertFile     = "ca.crt"
	CAKeyFile      = "ca.key"
	ClientCertFile = "client.crt"
	ClientKeyFile  = "client.key"
)

// ServerCertFile returns the name of server id's certificate file in the
// directory of WriteLocalCluster: server-<id>.crt.
func ServerCertFile(id int) string { return "server-" + strconv.Itoa(id) + ".crt" }

// ServerKeyFile returns the name of server id's key file in the directory
// of WriteLocalCluster: server-<id>.key.
func ServerKeyFile(id int) string { return "server-" + strconv.Itoa(id) + ".key" }

// WriteLocalCluster makes the certificates of a local cluster of servers
// ids in dir (created if need be, 0700): a CA (ca.crt, ca.key), a
// certificate per server (server-<id>.crt, .key) and a client certificate
// (client.crt, .key, named LocalClientName). Each is valid for hosts as
// well as localhost, 127.0.0.1 and ::1. It keeps the files that exist, and
// issues the missing ones with the CA it finds, so it may be run again
// with more servers; it fails if only one file of a pair exists.
func WriteLocalCluster(dir string, ids []int, hosts []string) error {
	for _, id := range ids {
		if id <= 0 {
			return fmt.Errorf("certs: local cluster: server ID %d is not positive", id)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("certs: local cluster: %w", err)
	}
	path := func(name string) string { return filepath.Join(dir, name) }
	hosts = append([]string{"localhost", "127.0.0.1", "::1"}, hosts...)

	caCert, caKey := path(CACertFile), path(CAKeyFile)
	have, err := pairExists(caCert, caKey)
	if err != nil {
		return fmt.Errorf("certs: local cluster: %w", err)
	}
	var ca *CA
	if have {
		if ca, err = LoadCA(caCert, caKey); err != nil {
			return fmt.Errorf("certs: local cluster: %w", err)
		}
	} else {
		if ca, err = NewCA("raft local cluster CA", LocalCAValidity); err != nil {
			return fmt.Errorf("certs: local cluster: %w", err)
		}
		if err := ca.WriteFiles(caCert, caKey); err != nil {
			return fmt.Errorf("certs: local cluster: %w", err)
		}
	}

	leaves := []struct {
		cert, key string
		leaf      Leaf
	}{{path(ClientCertFile), path(ClientKeyFile), Leaf{ClientName: LocalClientName}}}
	for _, id := range ids {
		leaves = append(leaves, struct {
			cert, key string
			leaf      Leaf
		}{path(ServerCertFile(id)), path(ServerKeyFile(id)), Leaf{ServerID: id}})
	}
	for _, l := range leaves {
		have, err := pairExists(l.cert, l.key)
		if err != nil {
			return fmt.Errorf("certs: local cluster: %w", err)
		}
		if have {
			continue
		}
		l.leaf.Hosts, l.leaf.ValidFor = hosts, LocalLeafValidity
		certPEM, keyPEM, err := ca.Issue(l.leaf)
		if err != nil {
			return fmt.Errorf("certs: local cluster: %w", err)
		}
		if err := writePair(l.cert, certPEM, l.key, keyPEM); err != nil {
			return fmt.Errorf("certs: local cluster: %w", err)
		}
	}
	return nil
}

// pairExists reports whether both files of a certificate and its key
// exist; it fails if only one does.
func pairExists(certFile, keyFile string) (bool, error) {
	c, err := exists(certFile)
	if err != nil {
		return false, err
	}
	k, err := exists(keyFile)
	if err != nil {
		return false, err
	}
	switch {
	case c && !k:
		return false, fmt.Errorf("%s exists but its key %s does not: restore the key, or move the certificate aside to have a new pair made", certFile, keyFile)
	case k && !c:
		return false, fmt.Errorf("%s exists but its certificate %s does not: restore the certificate, or move the key aside to have a new pair made", keyFile, certFile)
	}
	return c, nil
}

func exists(name string) (bool, error) {
	_, err := os.Stat(name)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, fmt.Errorf("stat %s: %w", name, err)
}
