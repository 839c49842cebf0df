package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// adminDo sends an operator's request to base's admin API with the token
// and returns the answer's body. exit is -1 on a 200; otherwise the
// command's exit code (2 for the server's 400: the operator's input was
// refused), the reason already on stderr.
func adminDo(c *http.Client, req *http.Request, token, cmd, base string, stderr io.Writer) (body []byte, exit int) {
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "crowdpilot %s: %v\n", cmd, err)
		return nil, 1
	}
	defer resp.Body.Close()
	body, _ = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode == http.StatusOK {
		return body, -1
	}
	var e struct {
		Error string `json:"error"`
	}
	json.Unmarshal(body, &e)
	fmt.Fprintf(stderr, "crowdpilot %s: refused by %s (%d): %s\n", cmd, base, resp.StatusCode, orDash(e.Error))
	if resp.StatusCode == http.StatusBadRequest {
		return nil, 2
	}
	return nil, 1
}
