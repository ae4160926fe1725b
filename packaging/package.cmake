# The Debian package: install rules for everything besides the two binaries
# (agent/CMakeLists.txt installs those) and the CPack DEB settings.
#   cmake --build <dir> --target package  ->  phonefarm-agent_<version>-<release>_<arch>.deb
# scripts/test-package builds it, runs lintian and checks what it contains.
#
# Paths follow Debian 12: units and udev rules under /lib (usrmerge makes it
# the same directory as /usr/lib, and deb-systemd-helper looks there), the
# sysusers/tmpfiles snippets under /usr/lib. /etc and /lib are absolute
# destinations: they are where the system reads them, whatever the prefix.

set(PHONEFARM_PACKAGING_DIR ${PROJECT_SOURCE_DIR}/packaging)
set(PHONEFARM_PACKAGING_BINARY_DIR ${PROJECT_BINARY_DIR}/packaging)
set(PHONEFARM_DEBIAN_RELEASE 1)
set(PHONEFARM_DEBIAN_VERSION ${PROJECT_VERSION}-${PHONEFARM_DEBIAN_RELEASE})
set(PHONEFARM_DOC_DIR share/doc/phonefarm-agent)

# Full RELRO for the packaged binaries (the GOT read-only before main runs):
# the agent runs with capabilities, and lintian's hardening check asks for it.
foreach(target IN ITEMS phonefarm-agent phonefarmctl)
  target_link_options(${target} PRIVATE LINKER:-z,relro LINKER:-z,now)
endforeach()

# Directories in the package are 0755 whatever the umask of the build.
set(CMAKE_INSTALL_DEFAULT_DIRECTORY_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE
                                                WORLD_READ WORLD_EXECUTE)

# Debian wants the changelog and the man pages compressed with gzip -9n (no
# name or timestamp in the header, so the package is reproducible). The
# changelog's version is the package's, filled in here.
configure_file(${PHONEFARM_PACKAGING_DIR}/changelog.in ${PHONEFARM_PACKAGING_BINARY_DIR}/changelog.Debian @ONLY)
set(PHONEFARM_COMPRESSED_DOCS "")
foreach(source IN ITEMS ${PHONEFARM_PACKAGING_BINARY_DIR}/changelog.Debian ${PHONEFARM_PACKAGING_DIR}/man/phonefarm-agent.8
                        ${PHONEFARM_PACKAGING_DIR}/man/phonefarmctl.1)
  get_filename_component(name ${source} NAME)
  set(copy ${PHONEFARM_PACKAGING_BINARY_DIR}/gz/${name})
  add_custom_command(
    OUTPUT ${copy}.gz
    COMMAND ${CMAKE_COMMAND} -E make_directory ${PHONEFARM_PACKAGING_BINARY_DIR}/gz
    COMMAND ${CMAKE_COMMAND} -E copy ${source} ${copy}
    COMMAND gzip -9nf ${copy}
    DEPENDS ${source}
    VERBATIM)
  list(APPEND PHONEFARM_COMPRESSED_DOCS ${copy}.gz)
endforeach()
add_custom_target(phonefarm_package_docs ALL DEPENDS ${PHONEFARM_COMPRESSED_DOCS})

install(FILES ${PROJECT_SOURCE_DIR}/systemd/phonefarm-agent.service ${PROJECT_SOURCE_DIR}/systemd/phonefarm-agent.socket
              ${PROJECT_SOURCE_DIR}/systemd/phonefarm-job@.service DESTINATION /lib/systemd/system)
# The generator of the job units' limits drop-in (TasksMax=, MemoryMax=,
# CPUWeight= from [work]; agent/exec/job_unit_limits.hpp).
install(PROGRAMS ${PROJECT_SOURCE_DIR}/systemd/phonefarm-agent-job-limits DESTINATION /lib/systemd/system-generators)
# The agent's user may start, stop and kill phonefarm-job@*.service only.
install(FILES ${PROJECT_SOURCE_DIR}/systemd/50-phonefarm-agent.rules DESTINATION share/polkit-1/rules.d)
install(FILES ${PROJECT_SOURCE_DIR}/systemd/phonefarm-agent.sysusers.conf DESTINATION lib/sysusers.d
        RENAME phonefarm-agent.conf)
install(FILES ${PROJECT_SOURCE_DIR}/systemd/phonefarm-agent.tmpfiles.conf DESTINATION lib/tmpfiles.d
        RENAME phonefarm-agent.conf)
install(FILES ${PROJECT_SOURCE_DIR}/udev/70-phonefarm-agent.rules DESTINATION /lib/udev/rules.d)
# A conffile (packaging/debian/conffiles): dpkg keeps the operator's edits on
# upgrade. 0644 in the package; the tmpfiles snippet narrows it to 0640
# root:phonefarm once the group exists.
install(FILES ${PHONEFARM_PACKAGING_DIR}/agent.toml DESTINATION /etc/phonefarm-agent)
install(FILES ${PHONEFARM_PACKAGING_DIR}/copyright ${PROJECT_SOURCE_DIR}/README.md
              ${PHONEFARM_PACKAGING_BINARY_DIR}/gz/changelog.Debian.gz
        DESTINATION ${PHONEFARM_DOC_DIR})
install(FILES ${PHONEFARM_PACKAGING_BINARY_DIR}/gz/phonefarm-agent.8.gz DESTINATION share/man/man8)
install(FILES ${PHONEFARM_PACKAGING_BINARY_DIR}/gz/phonefarmctl.1.gz DESTINATION share/man/man1)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME phonefarm-agent)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_PACKAGE_CONTACT "phonefarm-agent maintainers <maintainers@users.noreply.r-seed-f5e04d1a.example>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "phone farm rack agent: runs and cancels work on Android phones")
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
    "The agent runs on every host of a phone farm rack. A central scheduler
submits work to it over an HTTP API; each queue item runs as a contained
process tree in its own cgroup, is cancelled softly or by force, and a phone
whose work was killed gets its ADB/USB session reset. Every state change is
stored in SQLite before it is acknowledged.
.
This package contains the daemon (phonefarm-agent, a systemd service), the
technicians' command-line tool (phonefarmctl), and the udev rules that give
the agent access to the phones and their USB hubs.")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE ${PHONEFARM_DEBIAN_RELEASE})
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# dpkg-shlibdeps adds the libraries the binaries link (libsqlite3-0,
# libusb-1.0-0, libsystemd0, ...) to these. adb: the agent starts and talks
# to the adb server. adduser: postinst's fallback when systemd-sysusers is
# missing (lintian wants it as a plain dependency; it is on every Debian
# system anyway).
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# dbus and polkitd: the agent starts each execution as a job unit over the
# system bus, authorised by the package's polkit rule ([work] launcher =
# "systemd", the packaged config).
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adb, adduser, dbus, polkitd")
# systemd runs the service, and gives postinst systemd-sysusers and
# systemd-tmpfiles (it falls back to adduser and chmod without them). udev
# applies the USB rules; without it (containers) the USB reset steps need
# root.
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "systemd, udev")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PHONEFARM_PACKAGING_DIR}/debian/conffiles ${PHONEFARM_PACKAGING_DIR}/debian/postinst
    ${PHONEFARM_PACKAGING_DIR}/debian/prerm ${PHONEFARM_PACKAGING_DIR}/debian/postrm)
# Maintainer scripts 0755, conffiles 0644, whatever their mode in the tree.
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# Unstripped binaries are a lintian error; the build dir keeps the debug info.
set(CPACK_STRIP_FILES ON)
set(CPACK_SOURCE_GENERATOR "")
include(CPack)
