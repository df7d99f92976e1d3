package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// The client side of the /admin endpoints (raftkv transfer, members,
// add-voter, ...): find the leader through the replicas given with -addr,
// and ask it, again while asking again may help.

// untilLeader finds the leader through the replicas of cc and calls try
// with its HTTP address, until try says asking again would not help or
// ctx ends. what names the request in the error of a timeout.
func untilLeader(ctx context.Context, cc *clientConn, what string, try func(leader string) (retry bool, err error)) error {
	var lastErr error
	for {
		leader := ""
		for _, a := range cc.addrs {
			st, err := cc.status(ctx, a)
			if err != nil {
				lastErr = fmt.Errorf("%s: %w", a, err)
				continue
			}
			if st.Leader >= 0 && st.LeaderHTTP != "" {
				leader = st.LeaderHTTP
				break
			}
			lastErr = fmt.Errorf("%s knows of no leader", a)
		}
		if leader != "" {
			retry, err := try(leader)
			if err == nil || !retry {
				return err
			}
			lastErr = err
		}
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			return fmt.Errorf("no %s done in time: %v", what, lastErr)
		}
	}
}

// adminRequest sends method path (with body, if not nil) to the replica at
// addr, with cc's credentials, and decodes the JSON answer into rep. It
// returns the HTTP status; err is a failure to get an answer.
func adminRequest(ctx context.Context, cc *clientConn, method, addr, path string, body []byte, rep any) (status int, err error) {
	u := strings.TrimSuffix(urlOf(addr), "/") + path
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if cc.token != "" {
		req.Header.Set("Authorization", "Bearer "+cc.token)
	}
	resp, err := cc.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", addr, shortErr(err))
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(rep); err != nil {
		return resp.StatusCode, fmt.Errorf("%s: HTTP %d, bad answer: %v", addr, resp.StatusCode, err)
	}
	return resp.StatusCode, nil
}
