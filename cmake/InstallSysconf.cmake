# Installs ROUTERD_ETC_FILES into the configuration directory that belongs to
# the install-time prefix: /etc/routerd for /usr (the FHS place), else
# PREFIX/etc/routerd. ROUTERD_INSTALL_SYSCONFDIR overrides (relative to the
# prefix, or absolute). file(INSTALL) adds DESTDIR itself.
if(ROUTERD_INSTALL_SYSCONFDIR)
  set(dest "${ROUTERD_INSTALL_SYSCONFDIR}")
  if(NOT IS_ABSOLUTE "${dest}")
    set(dest "${CMAKE_INSTALL_PREFIX}/${dest}")
  endif()
elseif(CMAKE_INSTALL_PREFIX STREQUAL "/usr" OR CMAKE_INSTALL_PREFIX STREQUAL "/usr/")
  set(dest "/etc/routerd")
else()
  set(dest "${CMAKE_INSTALL_PREFIX}/etc/routerd")
endif()
file(INSTALL ${ROUTERD_ETC_FILES} DESTINATION "${dest}"
     PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
