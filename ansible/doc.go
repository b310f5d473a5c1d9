// Package ansible holds the Ansible content that provisions sower Standbys:
// the role roles/sower_standby and the playbook provision-standby.yml (see
// README.md in this directory). It has no Go code of its own; its tests run
// the real ansible-playbook against localhost with a real Leader process and
// check that the provisioned Standby becomes a voting member, that a second
// run changes nothing, and that a wrong CA pin stops the play before the
// target is touched.
package ansible
