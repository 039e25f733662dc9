package org.jim.export

/**
 * A password or a connection string holding one. The engine hands secrets across as plain strings
 * (a UniFFI custom type); the generated bindings wrap every one in this class (see `uniffi.toml`),
 * so a record holding one never prints it: [toString] is `***`, and only the engine reads the value
 * back out. Compile this file with the generated `jim_export.kt`.
 */
class Secret(private val value: String) {
    /** The text the engine receives (the bindings' lowering of a `Secret` field). */
    fun expose(): String = value

    /** True when the secret is the empty string. */
    fun isEmpty(): Boolean = value.isEmpty()

    override fun toString(): String = "***"

    override fun equals(other: Any?): Boolean = other is Secret && other.value == value

    override fun hashCode(): Int = value.hashCode()
}
