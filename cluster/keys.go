package cluster

import (
	"crypto/subtle"
	"fmt"
	"slices"
)

// This file is the gossip keyring: rotation of Config.SecretKey on a
// running node.
//
// memberlist encrypts every gossip message with the primary key and tries
// every installed key on what it receives, so a key is rotated without
// downtime in three steps, each done on every member before the next
// starts:
//
//	InstallKey(new)  // every member can read messages sealed with new
//	UseKey(new)      // members seal with new; old is still read
//	RemoveKey(old)   // old no longer opens anything
//
// A node that restarts during a rotation must be given every key still
// installed on the others (SecretKey plus SecondaryKeys), or it cannot join.

// InstallKey adds key (16, 24 or 32 bytes) to the gossip keyring: from
// then on, gossip sealed with it is accepted. Messages are still sealed
// with the primary key until UseKey. Installing an installed key does
// nothing. It returns ErrNoKeyring when the node was started without a
// SecretKey, and ErrClosed after Close.
func (c *Cluster) InstallKey(key []byte) error {
	if err := c.keyringOp(); err != nil {
		return err
	}
	if err := c.keyring.AddKey(slices.Clone(key)); err != nil {
		return fmt.Errorf("cluster: install key: %w", err)
	}
	c.logger.Info("cluster: gossip key installed", "keys", len(c.keyring.GetKeys()))
	return nil
}

// UseKey makes an installed key the primary key, the one every gossip
// message from this node is sealed with. It returns ErrUnknownKey for a key
// that is not installed, ErrNoKeyring when the node has no keyring, and
// ErrClosed after Close.
func (c *Cluster) UseKey(key []byte) error {
	if err := c.keyringOp(); err != nil {
		return err
	}
	if findKey(c.keyring.GetKeys(), key) < 0 {
		return ErrUnknownKey
	}
	if err := c.keyring.UseKey(key); err != nil {
		return fmt.Errorf("cluster: use key: %w", err)
	}
	c.logger.Info("cluster: gossip primary key changed")
	return nil
}

// RemoveKey removes a key from the gossip keyring: gossip sealed with it is
// refused from then on. Removing a key that is not installed does nothing.
// It returns ErrPrimaryKey for the primary key (switch with UseKey first),
// ErrNoKeyring when the node has no keyring, and ErrClosed after Close.
func (c *Cluster) RemoveKey(key []byte) error {
	if err := c.keyringOp(); err != nil {
		return err
	}
	switch findKey(c.keyring.GetKeys(), key) {
	case -1:
		return nil
	case 0:
		return ErrPrimaryKey
	}
	if err := c.keyring.RemoveKey(key); err != nil {
		return fmt.Errorf("cluster: remove key: %w", err)
	}
	c.logger.Info("cluster: gossip key removed", "keys", len(c.keyring.GetKeys()))
	return nil
}

// Keys returns copies of the installed gossip keys, the primary first, or
// nil when the node was started without a SecretKey.
func (c *Cluster) Keys() [][]byte {
	if c.keyring == nil {
		return nil
	}
	keys := c.keyring.GetKeys()
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = slices.Clone(k)
	}
	return out
}

// keyringOp checks that key management is possible.
func (c *Cluster) keyringOp() error {
	switch {
	case c.closed.Load():
		return ErrClosed
	case c.keyring == nil:
		return ErrNoKeyring
	}
	return nil
}

// findKey returns the index of key in keys, or -1, comparing every key in
// constant time.
func findKey(keys [][]byte, key []byte) int {
	found := -1
	for i, k := range keys {
		if subtle.ConstantTimeCompare(k, key) == 1 {
			found = i
		}
	}
	return found
}
